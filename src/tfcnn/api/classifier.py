"""`tfcnn.load(path) -> Classifier`: a trained model with what it needs to answer.

`Classifier` is the model's one inference path (`tfcnn.models.trained.TrainedModel`:
`predict_proba`, `logits`, its preprocessing and calibration) with the user's verbs on
top: `predict` and `probabilities` for files, folders, Pillow images and arrays,
`evaluate`, `explain` and `export`. `tfcnn predict`, `evaluate`, `explain`, `export` and
`serve` call these methods; none of them unwraps the Keras model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.api.report import Report
from tfcnn.core.prediction import Prediction
from tfcnn.core.spelling import as_caller_spells
from tfcnn.models.trained import TrainedModel


class Classifier(TrainedModel):
    """A trained image classifier: `predict`, `probabilities`, `predict_proba`,
    `evaluate`, `explain`, `export`.

    Attributes: `class_names` (list of str), `image_shape` ((H, W, C) of the network's
    input), `preprocessor` (the model's own preprocessing layer), `prepare` ("mnist" for
    digit models: user images are made MNIST-style first; None), `calibration`, `path`.

    Example:
        >>> clf = tfcnn.load(run_dir)
        >>> clf.class_names[:3], clf.image_shape
        (['0', '1', '2'], (28, 28, 1))
        >>> clf.predict_proba(np.zeros((2, 28, 28, 1), np.uint8)).shape
        (2, 10)
    """

    @property
    def preprocessing(self) -> str:
        """The short name of the model's preprocessing: "mnist" (digits) or "scale"."""
        return str(self.preprocessor.tag)

    def predict(self, inputs: Any, top_k: int = 3, tta: bool = False,
                preprocess: bool = True) -> list[Prediction]:
        """One `Prediction` per image, in order.

        `inputs`: one or a list of file paths, folders (their image files, sorted, sub-folders
        too, as `tfcnn predict` finds them), Pillow images, numpy arrays (H×W, H×W×C,
        N×H×W×C, or N×H×W grey images as `tfcnn.datasets.load` gives them; uint8 0-255 or
        float 0-1). Images are prepared as the model was trained (digits MNIST-style);
        `preprocess=False` only resizes, and feeds an array of the model's input shape
        unchanged. `tta`: average over one-pixel shifts (and mirror images for runs trained
        with hflip). Raises `tfcnn.TfcnnError` (an `ImageError`) naming the first input
        that cannot be used.

        Example:
            >>> answers = clf.predict(digit_files)
            >>> len(answers), answers[0].label in clf.class_names, answers[0].unknown in (0, 1)
            (2, True, True)
            >>> [p.source[-5:] for p in clf.predict(digit_folder)]  # sorted, as the CLI finds
            ['2.png', '7.png']
        """
        from tfcnn.predict.answers import predict_inputs

        return predict_inputs(self, inputs, top_k=top_k, tta=tta, preprocess=preprocess)

    def predict_files(self, paths: list[Any], *, top_k: int = 3, preprocess: bool = True,
                      tta: bool = False, expected: dict[Path, str] | None = None
                      ) -> list[dict[str, Any]]:
        """`tfcnn predict --json`'s entries for files, in order: a file that gives no image
        is an `{"file", "error"}` entry instead of an exception. `expected`: each file's
        class folder, adding "expected" and "correct" (see `tfcnn.predict.predict_files`).

        Example:
            >>> [sorted(r) for r in clf.predict_files(digit_files[:1], top_k=1)]
            [['file', 'index', 'label', 'probability', 'top_k', 'unknown']]
        """
        from tfcnn.predict.answers import predict_files

        return predict_files(self, paths, top_k=top_k, preprocess=preprocess, tta=tta,
                             expected=expected)

    def probabilities(self, inputs: Any, tta: bool = False,
                      preprocess: bool = True) -> np.ndarray:
        """float64 array (N, classes) of class probabilities for `inputs` (as `predict`).

        Example:
            >>> clf.probabilities(digit_files).shape
            (2, 10)
        """
        from tfcnn.predict.inputs import model_inputs

        batch, _ = model_inputs(inputs, self.prepare, self.image_shape, preprocess)
        return self.predict_proba(batch, tta=tta)

    def evaluate(self, dataset: str | None = None, data_dir: str | os.PathLike[str] | None
                 = None, tta: bool = False, report_dir: str | os.PathLike[str] | None = None
                 ) -> Report:
        """Accuracy, loss, calibration, per-class figures and the confusion matrix on a
        test set.

        `dataset`: a registered name or "folder:PATH" (default: the model's own); `data_dir`:
        where its files are (default: the run's setting, then the usual search); `tta`: as in
        `predict`; `report_dir`: also write the report folder there (or call
        `Report.save(dir)` later). Returns a `Report`.

        Example:
            >>> report = clf.evaluate(data_dir=data_dir)
            >>> report.confusion_matrix.shape
            (10, 10)
        """
        with as_caller_spells():
            report = evaluate_models([self], dataset=dataset, data_dir=data_dir, tta=tta)
        if report_dir is not None:
            report.save(report_dir)
        return report

    def calibrate(self, dataset: str | None = None,
                  data_dir: str | os.PathLike[str] | None = None, acceptance: float = 0.95
                  ) -> str:
        """Fit the temperature and the "unknown" rule again, and store them in the model's
        file (then used by every face): on the run's validation split (`dataset` None, for a
        run trained with `val_split`), else on `dataset`'s test images (or a whole
        `folder:PATH`), which the model did not train on. `acceptance`: the share of such
        images the "unknown" rule accepts. Returns a one-line description.

        Example:
            >>> clf.calibrate("mnist", data_dir=data_dir).startswith("calibrated: temperature")
            True
            >>> clf.calibration.temperature > 0, clf.calibration.ood.acceptance
            (True, 0.95)
        """
        from tfcnn.training.calibrate import calibrate_run

        with as_caller_spells():
            fitted = calibrate_run(self, dataset,
                                   None if data_dir is None else os.fspath(data_dir),
                                   acceptance=acceptance)
        self.keras_model.calibration = fitted.calibration
        return fitted.describe()

    def explain(self, inputs: Any, method: str = "gradcam", target: int | str | None = None,
                preprocess: bool = True, sources: list[str] | None = None) -> list[Any]:
        """Why the model answers what it answers: one `tfcnn.Explanation` per image.

        `method`: "gradcam", "integrated-gradients", "occlusion" or "all"; `target`: the
        class (index or name) to explain, default each image's predicted class;
        `preprocess`, as in `predict`; `sources`: names for the images (default: their
        paths, or "array[i]"). Each explanation has `.prediction`, `.heatmaps` (method →
        H×W array) and `.figure()`.

        Example:
            >>> e = clf.explain(digit_files[0], method="all")[0]
            >>> sorted(e.heatmaps)
            ['gradcam', 'integrated-gradients', 'occlusion']
        """
        from tfcnn.explain import explain_images, parse_methods
        from tfcnn.predict.inputs import model_inputs

        methods = parse_methods(method)  # a bad name fails before any image is decoded
        batch, names = model_inputs(inputs, self.prepare, self.image_shape, preprocess)
        return explain_images(self, batch, methods=methods, targets=target,
                              sources=sources or names) if len(batch) else []

    def explain_files(self, paths: list[Any], method: str = "gradcam",
                      target: int | str | None = None
                      ) -> tuple[list[Any], list[dict[str, str]]]:
        """`explain` for files, as `tfcnn explain` takes them: (the explanations, and an
        `{"file", "error"}` entry for each file that gives no image).

        Example:
            >>> explained, errors = clf.explain_files([*digit_files, "missing.png"])
            >>> len(explained), errors[0]["file"]
            (2, 'missing.png')
        """
        from tfcnn.core.errors import ImageError
        from tfcnn.explain import parse_methods
        from tfcnn.predict.inputs import expand_inputs, file_input

        parse_methods(method)
        arrays, names, errors = [], [], []
        for entry in expand_inputs([str(p) for p in paths]):
            try:
                arrays.append(file_input(entry, self.prepare, self.image_shape))
                names.append(str(entry))
            except ImageError as exc:
                errors.append({"file": str(entry), "error": str(exc)})
        batch = np.stack(arrays) if arrays else np.zeros((0, *self.image_shape), np.float32)
        return self.explain(batch, method, target, preprocess=False, sources=names), errors

    def worst_images(self, count: int, dataset: str | None = None,
                     data_dir: str | os.PathLike[str] | None = None
                     ) -> tuple[np.ndarray, list[str], list[str]]:
        """The `count` highest-loss test images (uint8, the model's input size), their
        names ("<dataset>-test-<index>") and true class names, worst first.

        Example:
            >>> images, names, truths = clf.worst_images(3, data_dir=data_dir)
            >>> images.shape[0], names[0].startswith("mnist-test-")
            (3, True)
        """
        from tfcnn.evaluation.report import worst_test_images

        with as_caller_spells():
            return worst_test_images(self, count, dataset,
                                     None if data_dir is None else os.fspath(data_dir))

    def export(self, path: str | os.PathLike[str], format: str = "keras",
               quantize: str | None = None, force: bool = False) -> Path:
        """Write the model for deployment, answering raw images as `predict` does:
        "keras" (a .keras file loadable without tfcnn), "saved_model" (a folder with the
        signatures `serving_default`, `serving_bytes` and `serving_uint8`), "tflite"
        (uint8 input, `quantize` None, "dynamic" or "float16") or "onnx". An existing file
        is replaced only with `force=True`. Returns the path (see `tfcnn.export`).

        Example:
            >>> clf.export(tmp / "digits.tflite", format="tflite").name
            'digits.tflite'
        """
        from tfcnn.export import export_model

        with as_caller_spells():
            result = export_model(self, format, quantize or "none", Path(path), force=force)
        return Path(result["path"])


def load(path: str | os.PathLike[str]) -> Classifier:
    """The model of a run directory or a `.keras` file saved by tfcnn, as a `Classifier`.

    Raises `RunDirError` (no model, an unreadable file) or `ModelSpecError` (a model tfcnn
    did not train), both `tfcnn.TfcnnError`.

    Example:
        >>> clf = tfcnn.load(run_dir)
        >>> len(clf.class_names), clf.prepare
        (10, 'mnist')
    """
    return Classifier.load(path)


def evaluate_models(models: list[Any], *, dataset: str | None = None,
                    data_dir: str | os.PathLike[str] | None = None, tta: bool = False
                    ) -> Report:
    """Evaluate one model or the average of several (an ensemble), with optional TTA.

    `models`: `TrainedModel`s, or paths of `.keras` files / run directories (loaded here).
    """
    from tfcnn.core.tfenv import import_tensorflow

    import_tensorflow()
    loaded = [m if isinstance(m, TrainedModel) else TrainedModel.load(m) for m in models]
    data_dir = None if data_dir is None else os.fspath(data_dir)
    if len(loaded) == 1 and not tta:
        from tfcnn.evaluation.report import evaluate_loaded

        evaluation = evaluate_loaded(loaded[0], dataset=dataset, data_dir=data_dir)
    else:
        from tfcnn.evaluation.ensemble import ensemble_evaluation

        evaluation = ensemble_evaluation(loaded, dataset=dataset, data_dir=data_dir, tta=tta)
    return Report(evaluation, ensemble=len(loaded) > 1 or tta)
