"""The attribution methods: Grad-CAM, integrated gradients and occlusion, with tf.GradientTape.

Each takes a trained model (a `TrainedModel`, or its Keras network, which returns logits),
a prepared float32 batch (N, H, W, C) in [0, 1] and one target class index per image, and
returns one H×W map per image (float32, (N, H, W)). The gradient methods differentiate the
network; occlusion, which compares answers, asks the model's one inference path
(`TrainedModel.predict_proba`) for its probabilities:

- `gradcam` (Selvaraju et al. 2017): the target logit's gradient with respect to a
  convolution's output (the last one at least 3×3, `gradcam_layer`), averaged over
  positions as channel weights; the weighted sum of the channels, ReLU, upsampled to H×W
  (bilinear between the positions' receptive-field centres, `centres`), divided by its
  maximum (0-1; all zero when nothing speaks for the class).
- `integrated_gradients` (Sundararajan et al. 2017): (x − baseline) times the target
  logit's gradient averaged along the straight path from the baseline to x (trapezoid
  rule), summed over channels. Signed; the attributions of an image add up to
  logit(x) − logit(baseline) (completeness, checked: within 5%, or the image is redone
  with more steps). The default baseline is "black" (all zeros): for MNIST-style digits,
  white ink on black, that is the empty canvas.
- `occlusion` (Zeiler & Fergus 2014): the drop of the target's probability when a square
  patch of the image is set to the baseline value, averaged over the patches covering each
  pixel. Signed: negative where hiding a region makes the class more likely.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfcnn.core.errors import ConfigError
from tfcnn.explain.graph import conv_recorder, is_feature_layer, is_notation, require_convs
from tfcnn.models.trained import TrainedModel

CHUNK = 512  # images per forward/backward pass: bounded memory at any batch size
BASELINES = ("black", "white")


def as_batch(model: Any, images: Any) -> np.ndarray:
    """`images` as the model's float32 (N, H, W, C) input; (H, W) or (N, H, W) for grey."""
    batch = np.asarray(images, dtype=np.float32)
    shape = tuple(int(n) for n in model.image_shape)
    if batch.ndim == 2 and shape[2] == 1:
        batch = batch[None]
    if batch.ndim == 3 and batch.shape[1:] == shape[:2] and shape[2] == 1:
        batch = batch[..., None]
    elif batch.ndim == 3 and batch.shape == shape:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[1:] != shape:
        raise ConfigError(f"images: expected shape (N, {', '.join(map(str, shape))}), "
                          f"got {batch.shape}")
    return batch


def _targets(targets: Any, n: int) -> np.ndarray:
    values = np.broadcast_to(np.asarray(targets, dtype=np.int64), (n,))
    return np.ascontiguousarray(values, dtype=np.int32)


def trained(model: Any) -> TrainedModel:
    """`model` as a `TrainedModel` (a Keras network is wrapped)."""
    return model if isinstance(model, TrainedModel) else TrainedModel(model)


def network_of(model: Any) -> Any:
    """The Keras network to differentiate: a `TrainedModel`'s, or `model` itself."""
    return model.network if isinstance(model, TrainedModel) else model


def gradcam_layer(model: Any, x: np.ndarray) -> int:
    """Index (among the recorded convolutions) of the one Grad-CAM looks at by default: the
    last whose output is at least 3×3. Smaller maps carry next to no position: the tutorial
    network's last convolution gives 1×1 (a constant heatmap), the MNIST `best` preset's
    2×2 (four quadrants); both then use an earlier one (11×11, 8×8)."""
    maps, _ = conv_recorder(model)(x[:1])
    sizes = [min(int(m.shape[1]), int(m.shape[2])) for _, m in maps]
    spatial = [i for i, size in enumerate(sizes) if size >= 3]
    return spatial[-1] if spatial else len(sizes) - 1


def gradcam(model: Any, images: Any, targets: Any, layer: int | str | None = None
            ) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for the `targets` classes (see the module doc).

    `layer`: which convolution (index among the model's convolutions, or its name);
    default: `gradcam_layer`. Raises `ModelSpecError` for a
    model without convolutions.
    """
    model = network_of(model)
    convs = require_convs(model, "Grad-CAM")
    x = as_batch(model, images)
    index = _layer_index(convs, layer) if layer is not None else gradcam_layer(model, x)
    record = conv_recorder(model)
    t = _targets(targets, len(x))
    cams = np.concatenate([gradcam_maps(record, x[i:i + CHUNK], t[i:i + CHUNK], index).numpy()
                           for i in range(0, len(x), CHUNK)])
    return upsample(cams, x.shape[1:3], centres(model, index, cams.shape[1:3], x.shape[1:3]))


def _layer_index(convs: list[Any], layer: int | str) -> int:
    if isinstance(layer, str):
        names = [c.name for c in convs]
        if layer not in names:
            raise ConfigError(f"layer: no convolution named {layer!r} (the model has "
                              f"{', '.join(names)})")
        return names.index(layer)
    if not -len(convs) <= layer < len(convs):
        raise ConfigError(f"layer: index {layer} out of range ({len(convs)} convolutions)")
    return layer % len(convs)


def gradcam_maps(record: Any, x: Any, targets: Any, index: int) -> Any:
    """Grad-CAM at the convolution's own resolution (N, h', w'), before upsampling: a
    tensor, so that it can run inside a tf.function."""
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        maps, logits = record(x)
        features = maps[index][1]
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))


def _geometry(layer: Any) -> list[tuple[tuple[int, int], tuple[int, int], str]]:
    """(kernel, stride, padding) of each spatial step a notation layer takes."""
    if hasattr(layer, "pool_size"):
        return [(_pair(layer.pool_size), _pair(layer.strides), layer.padding)]
    if hasattr(layer, "conv1") and hasattr(layer, "conv2"):  # a residual block
        return _geometry(layer.conv1) + _geometry(layer.conv2)
    if hasattr(layer, "kernel_size"):
        return [(_pair(layer.kernel_size), _pair(layer.strides),
                 getattr(layer, "padding", "valid"))]
    return []


def centres(model: Any, index: int, size: tuple[int, int], image: tuple[int, int]
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the convolution's output positions sit on the input: ((row offset, row step),
    (column offset, column step)) in input pixels, from each layer's kernel, stride and
    padding (same padding as TensorFlow pads: the extra pixel after).

    A notation network's valid convolutions and pools shrink the map from its edges, so a
    plain resize would stretch the heatmap ~3 px outwards on 28×28 inputs (the tutorial
    network's 11×11 second convolution has its centres at 3.5 ... 23.5). Other models:
    the resize's own half-pixel centres.
    """
    if not is_notation(model):
        steps = (image[0] / size[0], image[1] / size[1])
        return ((steps[0] - 1) / 2, steps[0]), ((steps[1] - 1) / 2, steps[1])
    offset, step, extent = [0.0, 0.0], [1.0, 1.0], list(image)
    seen = -1
    for layer in model.stack:
        for kernel, stride, padding in _geometry(layer):
            for axis in (0, 1):
                k, s, n = kernel[axis], stride[axis], extent[axis]
                out = -(-n // s) if padding == "same" else (n - k) // s + 1
                before = max((out - 1) * s + k - n, 0) // 2 if padding == "same" else 0
                offset[axis] += step[axis] * ((k - 1) / 2 - before)
                step[axis] *= s
                extent[axis] = out
        if is_feature_layer(layer):
            seen += 1
            if seen == index:
                break
    return (offset[0], step[0]), (offset[1], step[1])


def upsample(cams: np.ndarray, image: tuple[int, int],
             grid: tuple[tuple[float, float], tuple[float, float]]) -> np.ndarray:
    """(N, h', w') maps → (N, H, W): bilinear between the positions' centres on the input
    (`centres`), edge values beyond them; each map divided by its maximum (0: all zero)."""
    (row0, row_step), (col0, col_step) = grid
    rows = (np.arange(image[0]) - row0) / row_step
    cols = (np.arange(image[1]) - col0) / col_step
    out = np.empty((len(cams), *image), np.float32)
    for n, cam in enumerate(cams):
        wide = np.stack([np.interp(cols, np.arange(cam.shape[1]), r) for r in cam])
        out[n] = np.stack([np.interp(rows, np.arange(cam.shape[0]), c) for c in wide.T]).T
        top = out[n].max()
        out[n] = out[n] / top if top > 0 else 0.0
    return out


def _baseline(baseline: str | np.ndarray, x: np.ndarray) -> np.ndarray:
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ConfigError(f"baseline: expected one of {', '.join(BASELINES)} or an "
                              f"array, got {baseline!r}")
        return np.full_like(x, 0.0 if baseline == "black" else 1.0)
    base = np.asarray(baseline, dtype=np.float32)
    try:
        return np.broadcast_to(base, x.shape).astype(np.float32)
    except ValueError:
        raise ConfigError(f"baseline: shape {base.shape} does not fit images of shape "
                          f"{x.shape}") from None


def _target_gradients(model: Any, points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    x = tf.convert_to_tensor(points)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    return tape.gradient(score, x).numpy()


def integrated_gradients(model: Any, images: Any, targets: Any,
                         baseline: str | np.ndarray = "black", steps: int = 64,
                         tolerance: float | None = 0.05, max_steps: int = 512) -> np.ndarray:
    """Integrated-gradients maps (N, H, W), channels summed (see the module doc).

    `baseline`: "black" (zeros, the default), "white" (ones) or an array broadcastable to
    the batch. `steps`: path intervals (the trapezoid rule evaluates steps + 1 points).
    As Sundararajan et al. advise, completeness is checked: an image whose attributions
    miss logit(x) − logit(baseline) by more than `tolerance` (relative) is recomputed with
    twice the steps, up to `max_steps` (`tolerance=None`: never). Measured on 200 MNIST
    test images of a small trained CNN: 64 steps leave 3 over 5% (median error 0.18%, the
    misses where the difference is near 0), 256 steps none.
    """
    if steps < 1:
        raise ConfigError(f"steps: expected a positive integer, got {steps}")
    answers, model = trained(model), network_of(model)
    x = as_batch(model, images)
    base = _baseline(baseline, x)
    t = _targets(targets, len(x))
    out = _integrate(model, x, base, t, steps)
    if tolerance is None:
        return out
    rows = np.arange(len(x))
    gap = (answers.logits(x) - answers.logits(base))[rows, t]
    while True:
        miss = np.abs(out.reshape(len(x), -1).sum(axis=1) - gap) > tolerance * np.abs(gap)
        steps *= 2
        if not miss.any() or steps > max_steps:
            return out
        out[miss] = _integrate(model, x[miss], base[miss], t[miss], steps)


def _integrate(model: Any, x: np.ndarray, base: np.ndarray, t: np.ndarray, steps: int
               ) -> np.ndarray:
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    # Trapezoid weights: each interval's mean gradient, then the mean over intervals.
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] /= 2
    per_chunk = max(1, CHUNK // (steps + 1))
    out = []
    for i in range(0, len(x), per_chunk):
        xs, bs, ts = x[i:i + per_chunk], base[i:i + per_chunk], t[i:i + per_chunk]
        delta = xs - bs
        points = bs[:, None] + alphas[None, :, None, None, None] * delta[:, None]
        grads = _target_gradients(model, points.reshape(-1, *x.shape[1:]),
                                  np.repeat(ts, steps + 1))
        grads = grads.reshape(len(xs), steps + 1, *x.shape[1:])
        mean_grad = np.tensordot(weights, grads, axes=([0], [1]))
        out.append((delta * mean_grad).sum(axis=-1))
    return np.concatenate(out).astype(np.float32)


def _positions(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # the last row/column of patches reaches the edge
        starts.append(size - patch)
    return starts


def default_patch(image_shape: tuple[int, ...]) -> int:
    """A seventh of the shorter side (4 px on 28×28, 32 on 224×224): a stroke's width."""
    return max(1, round(min(image_shape[:2]) / 7))


def occlusion(model: Any, images: Any, targets: Any, patch: int | None = None,
              stride: int | None = None, value: float = 0.0) -> np.ndarray:
    """Occlusion maps (N, H, W): the target probability's drop when a `patch`×`patch`
    square (default `default_patch`) moved by `stride` (default half the patch) is set to
    `value` (default 0, black: the background of MNIST-style digits)."""
    answers = trained(model)
    x = as_batch(answers, images)
    h, w = x.shape[1:3]
    patch = patch or default_patch(x.shape[1:])
    stride = stride or max(1, patch // 2)
    if not 1 <= patch <= min(h, w) or stride < 1:
        raise ConfigError(f"occlusion: patch {patch} and stride {stride} do not fit "
                          f"{h}×{w} images (1 <= patch <= {min(h, w)}, stride >= 1)")
    t = _targets(targets, len(x))
    boxes = [(r, c) for r in _positions(h, patch, stride) for c in _positions(w, patch, stride)]
    cover = np.zeros((h, w), np.float32)
    for r, c in boxes:
        cover[r:r + patch, c:c + patch] += 1
    out = np.zeros((len(x), h, w), np.float32)
    for n in range(len(x)):
        copies = np.repeat(x[n:n + 1], len(boxes) + 1, axis=0)
        for k, (r, c) in enumerate(boxes, start=1):
            copies[k, r:r + patch, c:c + patch] = value
        probs = answers.predict_proba(copies)[:, t[n]]
        for k, (r, c) in enumerate(boxes, start=1):
            out[n, r:r + patch, c:c + patch] += probs[0] - probs[k]
    return out / cover
