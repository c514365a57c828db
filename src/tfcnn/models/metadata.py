"""What every tfcnn model carries besides its layers, in one place for both model classes.

`NotationModel` and `BackboneModel` keep, in their Keras config: `image_shape`,
`class_names`, `dataset`, the `Preprocessor` layer (`tfcnn.images.preprocessor`) and the
`Calibration` (`tfcnn.models.calibration`). Models saved before they had a preprocessor
record a tag (`preprocessing`: "mnist" or "scale") instead; `init_metadata` turns it into
the equivalent preprocessor, so old run directories still load.
"""

from __future__ import annotations

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines stay off the terminal

from typing import Any

import keras

from tfcnn.images.preprocessor import Preprocessor
from tfcnn.models.calibration import Calibration


def make_preprocessor(image_shape: Any, preprocessor: Any = None,
                      preprocessing: str | None = None, prepare: str | None = None
                      ) -> Preprocessor:
    """The model's `Preprocessor`: given, serialised (a dict from a config), from an old
    config's tag, or new for `image_shape` with the host step `prepare`."""
    if isinstance(preprocessor, Preprocessor):
        return preprocessor
    if isinstance(preprocessor, dict):
        return keras.saving.deserialize_keras_object(preprocessor)
    if preprocessing is not None:
        return Preprocessor.from_legacy(image_shape, preprocessing)
    return Preprocessor(tuple(image_shape), prepare=prepare)


def init_metadata(model: keras.Model, image_shape: Any, class_names: Any, dataset: str,
                  preprocessor: Any, preprocessing: str | None, prepare: str | None,
                  calibration: Any) -> None:
    """Set the metadata attributes on `model` (from constructor arguments or a config)."""
    model.image_shape = tuple(int(n) for n in image_shape)
    model.class_names = tuple(class_names)
    model.dataset = dataset
    model.preprocessor = make_preprocessor(model.image_shape, preprocessor, preprocessing,
                                           prepare)
    if tuple(model.preprocessor.image_shape) != model.image_shape:
        raise ValueError(f"preprocessor: its image shape {model.preprocessor.image_shape} "
                         f"is not the model's {model.image_shape}")
    model.calibration = (calibration if isinstance(calibration, Calibration)
                         else Calibration.from_config(calibration))


def metadata_config(model: keras.Model) -> dict[str, Any]:
    """The metadata part of the model's `get_config`."""
    return {"image_shape": list(model.image_shape), "class_names": list(model.class_names),
            "dataset": model.dataset,
            "preprocessor": keras.saving.serialize_keras_object(model.preprocessor),
            "calibration": model.calibration.to_config()}
