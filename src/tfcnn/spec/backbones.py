"""The keras.applications backbones `--model keras:NAME` may name, and where their weights are.

Pure Python (no TensorFlow), so the CLI can reject an unknown name at once. Each entry
records the keras.applications constructor, the module whose `preprocess_input` prepares
0-255 RGB input for it (a no-op for MobileNetV3, EfficientNet(V2) and ConvNeXt, which
rescale inside the network), and the ImageNet "no top" weights file as keras.applications
names it in Keras's cache (`~/.keras/models/`, or `$KERAS_HOME/models/`) with its address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tfcnn.core.errors import ConfigError, ModelSpecError

KERAS_PREFIX = "keras:"
_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    name: str            # the keras.applications constructor, e.g. "MobileNetV3Small"
    module: str          # keras.applications.<module>.preprocess_input
    weights_file: str    # ImageNet weights without the classifier, as Keras caches them
    weights_url: str


def _entry(name: str, module: str, weights_file: str, folder: str) -> Backbone:
    return Backbone(name, module, weights_file, folder + weights_file)


BACKBONES: dict[str, Backbone] = {b.name.lower(): b for b in (
    _entry("MobileNetV3Small", "mobilenet_v3",
           "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", _GCS + "mobilenet_v3/"),
    _entry("MobileNetV3Large", "mobilenet_v3",
           "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", _GCS + "mobilenet_v3/"),
    # Keras picks the 224-row file for any input size but 96, 128, 160 and 192; the
    # convolution weights have the same shapes at every size, so tfcnn always uses it.
    _entry("MobileNetV2", "mobilenet_v2",
           "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
           _GCS + "mobilenet_v2/"),
    _entry("EfficientNetB0", "efficientnet", "efficientnetb0_notop.h5",
           "https://storage.googleapis.com/keras-applications/"),
    _entry("EfficientNetV2B0", "efficientnet_v2", "efficientnetv2-b0_notop.h5",
           _GCS + "efficientnet_v2/"),
    _entry("ResNet50", "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
           _GCS + "resnet/"),
    _entry("ResNet50V2", "resnet_v2",
           "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _GCS + "resnet/"),
    _entry("DenseNet121", "densenet",
           "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", _GCS + "densenet/"),
    _entry("ConvNeXtTiny", "convnext", "convnext_tiny_notop.h5", _GCS + "convnext/"),
)}

WEIGHTS_CHOICES = ("imagenet", "none")  # or the path of a weights file
BACKBONE_MIN_SIZE = 32  # keras.applications refuses smaller inputs, for every network here


def is_backbone_spec(model: str) -> bool:
    """True for `keras:NAME` model names (any case)."""
    return model.strip().lower().startswith(KERAS_PREFIX)


def backbone_of(spec: str) -> Backbone:
    """The backbone `keras:NAME` names (any case); ModelSpecError naming the known ones."""
    name = spec.strip()[len(KERAS_PREFIX):]
    try:
        return BACKBONES[name.lower()]
    except KeyError:
        known = ", ".join(b.name for b in BACKBONES.values())
        raise ModelSpecError(f"--model {spec.strip()!r}: unknown keras.applications backbone "
                             f"(known: {known})") from None


def backbone_spec(spec: str) -> str:
    """`keras:NAME` with NAME spelt as keras.applications does."""
    return KERAS_PREFIX + backbone_of(spec).name


def keras_cache_dir() -> Path:
    """Where keras.applications caches weights: $KERAS_HOME/models or ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def weights_path(spec: str, weights: str) -> Path | None:
    """The weights file to load for `--weights` ("imagenet", "none" or a path); None: none.

    Never downloads: "imagenet" means the file already in Keras's cache, and its absence is
    one ConfigError naming the file, the folder and the address to fetch it from.
    """
    backbone = backbone_of(spec)
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        path = keras_cache_dir() / backbone.weights_file
        if not path.is_file():
            raise ConfigError(f"--weights imagenet: {path} not found (tfcnn does not download; "
                              f"fetch {backbone.weights_url} into {path.parent})")
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights {weights}: no such file (expected imagenet, none or "
                          "the path of a weights file)")
    return path
