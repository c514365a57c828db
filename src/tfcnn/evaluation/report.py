"""Evaluating a trained model on a test set: metrics, the text report and the report folder.

`evaluate_loaded(model)` evaluates a `TrainedModel` (`tfcnn.models.trained`: the one
inference path) on a test set and writes nothing; `Evaluation.write` saves the report folder
(evaluation.json, evaluation.txt and the PNG figures of `tfcnn.evaluation.plots`).
`format_evaluation` renders a report as text. `build_report` and `Evaluation` are shared
with `tfcnn.evaluation.ensemble` (ensembles, TTA). The metric helpers live in
`tfcnn.evaluation.metrics` (plain numpy).

The test loss is defined as in training (`tfcnn.training.loop`): the mean over images of the
cross-entropy of the model's uncalibrated softmax, so it agrees with the last epoch's
`test_loss` in metrics.json; the calibrated figures are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tfcnn.core.errors import ConfigError, DatasetError, ModelSpecError, RunDirError
from tfcnn.core.fsutil import atomic_write_json, atomic_write_text
from tfcnn.core.rundir import RunDir, read_config, read_epoch_records
from tfcnn.data import pipeline
from tfcnn.data.files import ImageFiles
from tfcnn.data.folders import load_image_folder, parse_folder_spec, split_dirs
from tfcnn.data.locate import load_dataset
from tfcnn.data.registry import get_dataset_info
from tfcnn.data.source import load_training_data
from tfcnn.evaluation.calibration import calibration_report
from tfcnn.evaluation.metrics import (
    average_metrics,
    confusion_matrix,
    most_confused,
    per_class_metrics,
)
from tfcnn.evaluation.plots import (
    confusion_matrix_figure,
    reliability_figure,
    save_figure,
    training_curves_figure,
    worst_images_figure,
)
from tfcnn.evaluation.text import TOP_K, format_evaluation
from tfcnn.models.trained import TrainedModel, log_softmax, softmax

BATCH_SIZE = 1000  # test images decoded and handed to the model at once
WORST_IMAGES = 25  # tiles in worst_images.png (a 5 x 5 grid)


# --- running the model -------------------------------------------------------------------

def data_tag(dataset: str) -> str:
    """A folder-name tag for a dataset setting: "fashion_mnist", "folder-pets" (the folder's
    name), for report folders of evaluations on other data."""
    import re

    root = parse_folder_spec(dataset)
    name = f"folder-{Path(root).name}" if root is not None else dataset.strip().lower()
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-") or "data"


def is_own_dataset(model: TrainedModel, dataset: str) -> bool:
    """Whether `dataset` names the data `model` was trained on (its test set)."""
    own, root = model.dataset, parse_folder_spec(dataset)
    if root is None:
        return get_dataset_info(dataset).name == own
    own_root = parse_folder_spec(own) if own else None
    return own_root is not None and Path(own_root).resolve() == Path(root).resolve()


def run_dir_of(model_file: Path) -> RunDir | None:
    """The run directory holding `model_file` as its model.keras, else None."""
    run = RunDir(model_file.parent)
    return run if model_file.name == run.model.name and run.config.is_file() else None


@dataclass(frozen=True)
class EvalSet:
    """The images a model is evaluated on: uint8 (N, H, W[, C]) and their labels; a large
    image folder's images are `ImageFiles`, read from disk batch by batch."""

    name: str
    images: Any
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    skipped: int = 0  # unreadable files left out of an image folder


def _check_fit(model: TrainedModel, name: str, classes: int,
               image_shape: tuple[int, ...]) -> None:
    outputs = len(model.class_names)
    if outputs != classes:
        raise ModelSpecError(f"{model.path}: the model gives {outputs} class outputs, but "
                             f"dataset {name!r} has {classes} classes")
    if tuple(model.image_shape) != tuple(image_shape):
        raise ModelSpecError(f"{model.path}: the model takes images of shape "
                             f"{tuple(model.image_shape)}, but dataset {name!r} has "
                             f"{tuple(image_shape)}")


def info_shape(info: Any) -> tuple[int, ...]:
    """A registered dataset's image shape with its channel axis (grey images: 1)."""
    shape = tuple(info.image_shape)
    return shape if len(shape) == 3 else (*shape, 1)


def load_test_set(model: TrainedModel, name: str, data_dir: str | None,
                  run: RunDir | None) -> EvalSet:
    """The test images for `name`, checked against the model before any slow loading.

    A registered dataset gives its test split (its folder from `data_dir`, else the run's
    config.json). An image folder that is the run's own dataset gives the very held-out
    split training tested on; any other folder is evaluated whole, read at the model's size.
    """
    root = parse_folder_spec(name)
    if root is None:
        info = get_dataset_info(name)
        # Known from the registry alone: refuse a mismatch before reading 50 MB of images.
        _check_fit(model, info.name, info.num_classes, info_shape(info))
        # Same count, other classes (an MNIST model on Fashion-MNIST) would score garbage.
        if model.class_names and tuple(model.class_names) != tuple(info.class_names):
            raise ModelSpecError(f"{model.path}: the model's classes {list(model.class_names)} "
                                 f"are not {info.name}'s {list(info.class_names)}; evaluate "
                                 "it on the dataset it was trained on")
        origin = "--data-dir"
        if data_dir is None and run is not None:
            data_dir, origin = read_config(run).data_dir, f"{run.config} data_dir"
        data = load_dataset(info, data_dir, origin=origin)
        return EvalSet(info.name, data.x_test, data.y_test, data.class_names, data.source)
    config = read_config(run) if run is not None else None
    if config is not None and config.dataset == name:
        data, skipped = load_training_data(config, data_dir_origin=f"{run.config} data_dir")
        images, labels = data.x_test, data.y_test
        if not len(labels):
            raise DatasetError(f"{root}: run {run.path} held out no images (trained with "
                               "--test-split 0); pass --dataset folder:PATH with test images")
    else:
        # Another folder is evaluated whole; a ROOT with train/ and test/ by its test split.
        dirs = split_dirs(root)
        h, w, channels = model.image_shape
        folder = load_image_folder(root if dirs is None else dirs[1], image_size=(h, w),
                                   grayscale=channels == 1, test_split=0, stream=None)
        data, skipped = folder.dataset, folder.skipped
        images, labels = data.x_train, data.y_train  # test_split 0: every image is here
    # A folder's labels are its sorted sub-folder names: another set of names (or order)
    # would pair the model's outputs with the wrong classes.
    if model.class_names and tuple(model.class_names) != data.class_names:
        raise ModelSpecError(f"{model.path}: the model's classes {list(model.class_names)} "
                             f"differ from {root}'s sub-folders {list(data.class_names)}")
    shape = (*images.shape[1:3], images.shape[3] if images.ndim == 4 else 1)
    _check_fit(model, name, len(data.class_names), shape)
    return EvalSet(data.name, images, labels, data.class_names, data.source, len(skipped))


def image_batches(images: Any, batch_size: int = BATCH_SIZE) -> Any:
    """uint8 batches of `images` (an array, or `ImageFiles` decoded in parallel), in order."""
    if not isinstance(images, ImageFiles):
        for start in range(0, len(images), batch_size):
            yield np.asarray(images[start:start + batch_size])
        return
    pairs = pipeline.array_dataset(images, np.zeros(len(images), np.int32))
    for batch, _ in pairs.batch(batch_size).prefetch(1).as_numpy_iterator():
        yield batch


def model_logits(model: TrainedModel, images: Any) -> np.ndarray:
    """float32 (N, classes) logits of uint8 `images` (N, H, W[, C]), in order."""
    parts = [model.logits(batch) for batch in image_batches(images)]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.class_names)))


def per_image_losses(logits: np.ndarray, labels: np.ndarray,
                     temperature: float = 1.0) -> np.ndarray:
    """float64 (N,) cross-entropy of each image's softmax(logits / temperature)."""
    return -log_softmax(logits, temperature)[np.arange(len(labels)), labels.astype(np.int64)]


def test_set_for(model: TrainedModel, dataset: str | None, data_dir: str | None,
                 run: RunDir | None) -> EvalSet:
    """The test set `model` is evaluated on: `dataset`, else the one the model records."""
    name = dataset or model.dataset
    if not name:
        raise ConfigError(f"{model.path}: the model records no dataset; pass --dataset")
    test = load_test_set(model, name, data_dir, run)
    if not len(test.labels):
        raise DatasetError(f"{test.source}: no test images to evaluate on")
    return test


# With 10 or more classes, also the share of images whose true class is among the 5 likeliest.
TOP_K_FROM = 10  # classes from which the report adds top-5 accuracy


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose true class has one of the `k` highest probabilities (a tie at
    the k-th place counts against the image: strictly fewer than k classes may rank above)."""
    own = probs[np.arange(len(labels)), labels]
    above = (probs > own[:, np.newaxis]).sum(axis=1)
    return float((above < k).mean()) if len(labels) else 0.0


def build_report(test: EvalSet, probs: np.ndarray, pred: np.ndarray,
                 losses: np.ndarray) -> dict[str, Any]:
    """The report's figures from per-image probabilities (N, classes), predictions and losses."""
    names = list(test.class_names)
    labels = test.labels.astype(np.int64)
    cm = confusion_matrix(labels, pred, len(names))
    per_class = per_class_metrics(cm, names)
    report: dict[str, Any] = {
        "dataset": test.name,
        "data_source": test.source,
        "num_images": int(len(labels)),
        "skipped_files": test.skipped,
        "test_accuracy": round(float(np.trace(cm) / cm.sum()), 6),
        # float64 mean of float32 per-image losses: training's Mean metric, minus its drift.
        "test_loss": round(float(losses.astype(np.float64).mean()), 6),
        "per_class": per_class,
        "averages": average_metrics(per_class),
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused(cm, names),
    }
    if len(names) >= TOP_K_FROM:
        report[f"top{TOP_K}_accuracy"] = round(top_k_accuracy(probs, labels, TOP_K), 6)
    # Highest loss first; a stable sort keeps file order among equal losses.
    worst = np.argsort(-losses, kind="stable")[:WORST_IMAGES]
    report["worst_images"] = [{"index": int(i), "true": names[labels[i]],
                               "predicted": names[pred[i]],
                               "confidence": round(float(probs[i, pred[i]]), 6),
                               "loss": round(float(losses[i]), 6)} for i in worst]
    return report


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's results: the report dict, the images and the probabilities behind it,
    and the run directory (for its training curves), so figures can be drawn on demand."""

    report: dict[str, Any]
    test: EvalSet
    probs: np.ndarray
    run: RunDir | None = None
    heading: list[str] | None = None

    def figures(self) -> dict[str, Figure]:
        """The report's matplotlib figures: confusion matrix, worst images, training curves
        (the last only for a run directory's model with epoch records)."""
        test, probs, names = self.test, self.probs, list(self.test.class_names)
        figures = {"confusion_matrix": confusion_matrix_figure(
            np.asarray(self.report["confusion_matrix"]), names,
            title=f"Confusion matrix, {test.name}")}
        worst = np.array([w["index"] for w in self.report["worst_images"]], dtype=np.int64)
        pred = probs.argmax(axis=1)
        figures["worst_images"] = worst_images_figure(
            np.asarray(test.images[worst]), test.labels[worst], pred[worst],
            probs[worst, pred[worst]], names, title=f"Highest-loss test images, {test.name}")
        if self.report.get("reliability"):
            figures["reliability"] = reliability_figure(
                self.report["reliability"], title=f"Reliability, {test.name}",
                ece=self.report.get("ece"))
        epochs = read_epoch_records(self.run) if self.run is not None else []
        if epochs:
            try:
                figures["training_curves"] = training_curves_figure(
                    epochs, title=f"Training curves, {self.run.path.name}")
            except ValueError as exc:
                raise RunDirError(f"{self.run.metrics_json}: {exc}") from None
        return figures

    def write(self, out: Path) -> dict[str, Any]:
        """Write the figures (PNG), evaluation.json and evaluation.txt to `out`; return the
        report with report["files"] added."""
        files = {name: str(save_figure(figure, Path(out) / f"{name}.png"))
                 for name, figure in self.figures().items()}
        files["json"] = str(Path(out) / "evaluation.json")
        files["text"] = str(Path(out) / "evaluation.txt")
        self.report["files"] = files
        atomic_write_json(Path(out) / "evaluation.json", self.report)
        atomic_write_text(Path(out) / "evaluation.txt",
                          format_evaluation(self.report, self.heading) + "\n")
        return self.report


def evaluate_loaded(model: TrainedModel, *, dataset: str | None = None,
                    data_dir: str | None = None) -> Evaluation:
    """Evaluate a loaded model (a run's model.keras or a .keras file) on `dataset`
    (default: the one it records); nothing is written."""
    run = run_dir_of(model.path) if model.path is not None else None
    test = test_set_for(model, dataset, data_dir, run)
    logits = model_logits(model, test.images)
    probs = softmax(logits, model.calibration.temperature)
    report = {"model_file": str(model.path),
              **build_report(test, probs, logits.argmax(axis=1),
                             per_image_losses(logits, test.labels)),
              **calibration_report(logits, test.labels, model.calibration.temperature)}
    return Evaluation(report, test, probs, run)


def worst_test_images(model: TrainedModel, count: int, dataset: str | None = None,
                      data_dir: str | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """The `count` highest-loss test images of `dataset` (default: the model's) as uint8
    N×H×W×C, their names ("<dataset>-test-<index>") and true class names, worst first."""
    run = run_dir_of(model.path) if model.path is not None else None
    test = test_set_for(model, dataset, data_dir, run)
    losses = per_image_losses(model_logits(model, test.images), test.labels)
    worst = np.argsort(-losses, kind="stable")[:count]
    images = np.asarray(test.images[worst])
    if images.ndim == 3:
        images = images[..., np.newaxis]
    names = [f"{test.name}-test-{int(i)}" for i in worst]
    return images, names, [test.class_names[int(test.labels[i])] for i in worst]
