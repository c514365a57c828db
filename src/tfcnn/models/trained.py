"""`TrainedModel`: the one place a model runs for answers.

A trained tfcnn model (`model.keras`) is a network with its `Preprocessor` and its
`Calibration` (`tfcnn.models.metadata`). `TrainedModel` holds one and answers:

    batch (uint8 or float 0-1, any size) ─ preprocessor ─ network ─ logits ─ / T ─ softmax

- `logits(batch)`: the network's logits, in chunks of `BATCH_SIZE`, run by the chosen
  runtime (`tfcnn.models.runtimes`: a TensorFlow graph, or LiteRT for the server);
- `predict_proba(batch, tta=...)`: probabilities, the calibrated ones unless asked
  otherwise (softmax(logits / temperature), float64), with optional test-time
  augmentation (`tfcnn.models.tta`: one-pixel shifts, mirrored views for runs trained
  with --hflip).

Evaluation, TTA, ensembles, explanations, `tfcnn predict`, the server and the Python API
(`tfcnn.Classifier` is a subclass) all call these two; no other module runs a network for
its answers or applies a softmax (tests/test_one_path.py checks the source).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tfcnn.core.errors import ConfigError, ImageError
from tfcnn.models.calibration import Calibration
from tfcnn.models.tta import DEFAULT_SHIFTS, tta_probabilities

BATCH_SIZE = 256  # images per network call: bounded memory, few calls
RUNTIMES = ("graph", "litert")
_Self = TypeVar("_Self", bound="TrainedModel")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 probabilities of float logits (N, classes), divided by `temperature` first.

    float64: float32 probabilities underflow to 0 for a logit gap of ~104, and the log of an
    averaged 0 would be an infinite loss.
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 log-probabilities (the stable form of log(softmax))."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def check_batch(batch: Any, name: str = "batch") -> np.ndarray:
    """`batch` as an N×H×W×C array of uint8 pixels or floats in [0, 1] (N may be 0; H, W
    any size; C 1-4; N×H×W is a stack of grey images), or `ImageError` naming `name`."""
    values = np.asarray(batch)
    if values.ndim == 3:
        values = values[..., np.newaxis]
    shape = "×".join(str(n) for n in values.shape) or "a scalar"
    if values.ndim != 4 or not 1 <= values.shape[-1] <= 4:
        raise ImageError(f"{name}: expected images N×H×W×C (C = 1 to 4) or N×H×W, got {shape}")
    if values.size and values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: NaN or infinite values (expected floats in [0, 1])")
        if values.min() < 0 or values.max() > 1:
            raise ImageError(f"{name}: float values outside [0, 1] (got {values.min():g} to "
                             f"{values.max():g}; scale 0-255 pixels by 1/255, or pass uint8)")
    elif values.dtype != np.uint8 and values.dtype.kind != "f":
        raise ImageError(f"{name}: expected uint8 pixels (0-255) or floats (0-1), got dtype "
                         f"{values.dtype}")
    if len(values) and 0 in values.shape[1:3]:
        raise ImageError(f"{name}: empty images ({shape})")
    return values


@dataclass(frozen=True)
class Answers:
    """What the model answers for a batch: float64 (N, classes) calibrated probabilities
    and bool (N,) "unknown" flags (the input is unlike the training images)."""

    probabilities: np.ndarray
    unknown: np.ndarray


class TrainedModel:
    """A trained model and the one way to run it for answers (see the module docstring).

    Attributes: `class_names`, `image_shape` ((H, W, C) of the network's input),
    `preprocessor` (its `Preprocessor` layer), `calibration`, `dataset`, `path`.

    Example:
        >>> m = TrainedModel.load(run_dir)
        >>> m.predict_proba(np.zeros((2, 28, 28, 1), np.uint8)).shape
        (2, 10)
        >>> round(float(m.predict_proba(np.zeros((1, 64, 48, 3), np.uint8)).sum()), 6)
        1.0
    """

    def __init__(self, model: Any, path: str | os.PathLike[str] | None = None,
                 runtime: str = "graph") -> None:
        self._model = model
        self.path = Path(path) if path is not None else None
        self._logits_fn: Any = None
        self._runtime = "graph"
        self.runtime_note = ""
        if runtime != "graph":
            self.use_runtime(runtime)

    @classmethod
    def load(cls: type[_Self], source: str | os.PathLike[str]) -> _Self:
        """The model of a run directory or `.keras` file, through the one loader
        (`tfcnn.models.loader`: `RunDirError` / `ModelSpecError` for a bad one)."""
        from tfcnn.core.rundir import resolve_model_file
        from tfcnn.core.tfenv import import_tensorflow

        model_file = resolve_model_file(Path(source))  # a wrong path fails before TF loads
        import_tensorflow()
        from tfcnn.models.loader import load_checked_model

        return cls(load_checked_model(model_file), model_file)

    # --- what the model is -------------------------------------------------------------

    @property
    def keras_model(self) -> Any:
        """The Keras network: float32 N×H×W×C in [0, 1] at `image_shape` → logits. For
        gradients (explanations) and saving; answers come from `predict_proba`."""
        return self._model

    @property
    def network(self) -> Any:
        """The same Keras network, for attribution methods that need its gradients and
        inner layers (`tfcnn.explain`); never called for answers outside this class."""
        return self._model

    @property
    def class_names(self) -> list[str]:
        """The class names, output index i being class i."""
        return list(self._model.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the network's input."""
        height, width, channels = (int(n) for n in self._model.image_shape)
        return height, width, channels

    @property
    def preprocessor(self) -> Any:
        """The model's `tfcnn.images.preprocessor.Preprocessor` (saved in model.keras; a
        plain scaling one for a Keras network that records none)."""
        found = getattr(self._model, "preprocessor", None)
        if found is None:
            from tfcnn.images.preprocessor import Preprocessor

            found = self._model.preprocessor = Preprocessor(self.image_shape)
        return found

    @property
    def prepare(self) -> str | None:
        """The host-side step user images get before the preprocessor ("mnist" or None)."""
        return self.preprocessor.prepare

    @property
    def dataset(self) -> str:
        """The dataset the model was trained on ("" if it records none)."""
        return str(getattr(self._model, "dataset", ""))

    @property
    def calibration(self) -> Calibration:
        """The model's `Calibration` (temperature, "unknown" rule; none recorded: none)."""
        return getattr(self._model, "calibration", None) or Calibration()

    @property
    def runtime(self) -> str:
        """What runs the network: "graph" (TensorFlow) or "litert"."""
        return self._runtime

    # --- running it --------------------------------------------------------------------

    def use_runtime(self, runtime: str) -> str:
        """Run the network with `runtime` from now on: "graph", or "litert" when LiteRT
        converts it and agrees with the graph (else the graph stays, and `runtime_note`
        says why). Returns the runtime in use."""
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime: expected one of {', '.join(RUNTIMES)}, "
                              f"got {runtime!r}")
        from tfcnn.models.runtimes import checked_litert, graph_logits

        graph = graph_logits(self._model, self.image_shape)
        self._logits_fn, self._runtime = graph, "graph"
        if runtime == "litert":
            lite, self.runtime_note = checked_litert(self._model, self.image_shape, graph)
            if lite is not None:
                self._logits_fn, self._runtime = lite, "litert"
        return self._runtime

    def model_input(self, batch: Any) -> np.ndarray:
        """float32 N×H×W×C in [0, 1] at `image_shape`: `batch` through the preprocessor."""
        values = check_batch(batch)
        if not len(values):
            return np.zeros((0, *self.image_shape), np.float32)
        return self.preprocessor.to_input(values)

    def logits(self, batch: Any) -> np.ndarray:
        """float32 (N, classes) logits of `batch` (any images `check_batch` takes)."""
        x = self.model_input(batch)
        if self._logits_fn is None:
            from tfcnn.models.runtimes import graph_logits

            self._logits_fn = graph_logits(self._model, self.image_shape)
        if not len(x):
            return np.zeros((0, len(self.class_names)), np.float32)
        parts = [self._logits_fn(x[i:i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def answer(self, batch: Any, *, tta: bool = False) -> Answers:
        """`predict_proba`'s probabilities with the "unknown" flags beside them: an image is
        unknown when the model's rule (`calibration.ood`) finds its logits unlike the
        training images' (all False for a model without a rule)."""
        logits = self.logits(batch)
        rule = self.calibration.ood
        unknown = (rule.unknown(logits) if rule is not None
                   else np.zeros(len(logits), dtype=bool))
        probs = (self.predict_proba(batch, tta=True) if tta
                 else softmax(logits, self.calibration.temperature))
        return Answers(probs, unknown)

    def predict_proba(self, batch: Any, *, tta: bool = False,
                      calibrated: bool = True) -> np.ndarray:
        """float64 (N, classes) class probabilities of `batch` (uint8 0-255 or float 0-1
        images, N×H×W×C of any size, or N×H×W grey; N may be 0).

        `tta`: averaged over one-pixel shifts of each image (and their mirror images for
        runs trained with --hflip); `calibrated`: divide the logits by the model's
        temperature (False: the raw softmax). Raises `ImageError` for an unusable batch.
        """
        temperature = self.calibration.temperature if calibrated else 1.0
        if not tta:
            return softmax(self.logits(batch), temperature)
        x = self.model_input(batch)
        return tta_probabilities(lambda view: softmax(self.logits(view), temperature), x,
                                 DEFAULT_SHIFTS, self.tta_mirror)

    def answer_graph(self) -> Any:
        """The answers as TensorFlow ops, for exported graphs: a function of a batch tensor
        (any size, uint8 or float; see `Preprocessor`) → {"probabilities": float32
        (N, classes), calibrated as `predict_proba`'s, "labels": tf.string (N,)}; its
        `.from_input` takes the network's input (float32 at `image_shape`) instead."""
        import tensorflow as tf

        network, preprocessor = self._model, self.preprocessor
        temperature = float(self.calibration.temperature)
        names = tf.constant(self.class_names, tf.string)

        def from_input(x: Any) -> dict[str, Any]:
            logits = tf.cast(network(x, training=False), tf.float32)
            probs = tf.nn.softmax(logits / temperature, axis=-1)
            return {"probabilities": probs, "labels": tf.gather(names, tf.argmax(probs, -1))}

        def answer(images: Any) -> dict[str, Any]:
            return from_input(preprocessor(images))

        answer.from_input = from_input  # type: ignore[attr-defined]
        return answer

    @property
    def tta_mirror(self) -> bool:
        """Whether TTA adds mirrored views: for runs trained with --hflip, unless the network
        is mirror-invariant by construction (the mirrored views would repeat the others)."""
        from tfcnn.models.mirror import is_mirror_invariant

        return trained_with_mirroring(self.path) and not is_mirror_invariant(self._model)

    def __repr__(self) -> str:
        h, w, c = self.image_shape
        return (f"{type(self).__name__}({str(self.path)!r}: {len(self.class_names)} classes, "
                f"{h}×{w}×{c} input, prepare {self.prepare!r})")


def trained_with_mirroring(model_file: Path | None) -> bool:
    """True when the model is a run's model.keras and that run trained with --hflip."""
    from tfcnn.core.errors import TfcnnError
    from tfcnn.core.rundir import RunDir, read_config

    if model_file is None:
        return False
    run = RunDir(model_file.parent)
    if model_file.name != run.model.name or not run.config.is_file():
        return False
    try:
        return read_config(run).hflip
    except TfcnnError:  # an unreadable config.json only costs the mirrored views
        return False
