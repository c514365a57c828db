"""`LiveExplainer`: one image's prediction, Grad-CAM and feature maps, for the server's
`POST /explain` (the drawing page updates it as the user draws).

The prediction comes from the model's one inference path (`TrainedModel.predict_proba`);
the gradient and every convolution's output for the chosen class from one `tf.function`
traced once at start (a batch-free input signature), so an update costs one graph call
instead of Keras's eager per-layer dispatch; upsampling and PNG encoding are numpy and
Pillow. Measured for the tutorial network in docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfcnn.explain.graph import conv_layers, conv_recorder
from tfcnn.explain.methods import centres, gradcam_layer, network_of, trained, upsample


@dataclass(frozen=True)
class LiveResult:
    """probabilities (classes,), target index, Grad-CAM H×W in [0, 1] (None for a model
    without convolutions), feature maps [(layer name, H'×W'×C')]."""

    probabilities: np.ndarray
    target: int
    heatmap: np.ndarray | None
    feature_maps: list[tuple[str, np.ndarray]]


class LiveExplainer:
    """Grad-CAM and feature maps of a trained model, one image at a time."""

    def __init__(self, model: Any) -> None:
        self.answers = trained(model)
        self.model = model = network_of(model)
        self.image_shape = tuple(int(n) for n in model.image_shape)
        record = conv_recorder(model)
        self.has_convs = bool(conv_layers(model))
        blank = np.zeros((1, *self.image_shape), np.float32)
        self.layer = gradcam_layer(model, blank) if self.has_convs else -1
        layer = self.layer

        def run(x: Any, target: Any) -> Any:
            with tf.GradientTape() as tape:
                maps, logits = record(x)
                score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
            values = [value for _, value in maps]
            if layer < 0:
                return tf.zeros_like(logits), values
            features = values[layer]
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
            return cam, values

        self.names = [name for name, _ in record(blank)[0]]
        self.graph = tf.function(run, input_signature=[
            tf.TensorSpec((None, *self.image_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32)])
        self.explain(blank[0])  # trace now: the first client does not wait for it

    def explain(self, image: np.ndarray, target: int | None = None) -> LiveResult:
        """The prediction, Grad-CAM for `target` (default: the predicted class) and the
        feature maps for one prepared H×W×C image."""
        x = np.asarray(image, np.float32)[None]
        probs = self.answers.predict_proba(x)[0]
        chosen = int(np.argmax(probs)) if target is None else int(target)
        cam, values = self.graph(x, np.array([chosen], np.int32))
        heat = None
        if self.layer >= 0:
            cam = cam.numpy()
            grid = centres(self.model, self.layer, cam.shape[1:3], self.image_shape[:2])
            heat = upsample(cam, self.image_shape[:2], grid)[0]
        maps = [(name, value.numpy()[0]) for name, value in zip(self.names, values,
                                                                  strict=True)
                if len(value.shape) == 4]
        return LiveResult(probs, chosen, heat, maps)
