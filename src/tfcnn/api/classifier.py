"""`tfcnn.load(path) -> Classifier`: a trained model with what it needs to answer.

A `Classifier` wraps the Keras model that the one loader (`tfcnn.models.loader`) returns
with its class names, input shape and preprocessing; `tfcnn predict`, `evaluate`,
`explain`, `export` and `serve` all go through it, so each reads images, runs the model
and checks its input the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.api.report import Report
from tfcnn.core.prediction import Prediction


class Classifier:
    """A trained image classifier: `predict`, `probabilities`, `evaluate`, `explain`,
    `export`.

    Attributes: `class_names` (list of str), `image_shape` ((H, W, C)), `keras_model` (a
    Keras model whose call returns logits), `preprocessing` ("mnist" for digit models:
    user images are made MNIST-style; "scale": resized), `path` (the `.keras` file).

    Example:
        >>> clf = tfcnn.load("runs/mnist-fast-20261202-101500")  # doctest: +SKIP
        >>> clf.predict("my_digit.png")[0].label                  # doctest: +SKIP
        '7'
        >>> clf.evaluate().accuracy                                # doctest: +SKIP
        0.9912
    """

    def __init__(self, model: Any, path: str | os.PathLike[str]) -> None:
        self._model = model
        self.path = Path(path)

    @property
    def keras_model(self) -> Any:
        """The Keras model (inputs float32 N×H×W×C in [0, 1], outputs logits)."""
        return self._model

    @property
    def class_names(self) -> list[str]:
        """The class names, output index i being class i."""
        from tfcnn.predict.run import class_names

        return class_names(self._model, int(self._model.stack[-1].units)
                           if hasattr(self._model, "stack") else 0)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the model's input."""
        height, width, channels = (int(n) for n in self._model.image_shape)
        return height, width, channels

    @property
    def preprocessing(self) -> str:
        """How user images are prepared: "mnist" (digits) or "scale" (a plain resize)."""
        return str(getattr(self._model, "preprocessing", "scale"))

    @property
    def dataset(self) -> str:
        """The dataset the model was trained on ("" if it records none)."""
        return str(getattr(self._model, "dataset", ""))

    def uses_mirrored_views(self, tta: bool) -> bool:
        """Whether TTA for this model adds mirror images (runs trained with hflip)."""
        if not tta:
            return False
        from tfcnn.evaluation.ensemble import tta_mirrors

        return tta_mirrors(self.path, self._model)

    def predict(self, inputs: Any, top_k: int = 3, tta: bool = False,
                preprocess: bool = True) -> list[Prediction]:
        """One `Prediction` per image, in order.

        `inputs`: one or a list of file paths, Pillow images, numpy arrays (H×W, H×W×C,
        N×H×W×C, or N×H×W grey images as `tfcnn.datasets.load` gives them; uint8 0-255 or
        float 0-1). Images are prepared as the model was trained
        (digits MNIST-style); `preprocess=False` only resizes, and feeds an array of the
        model's input shape unchanged. `tta`: average over one-pixel shifts (and mirror
        images for runs trained with hflip). Raises `tfcnn.TfcnnError` (an `ImageError`)
        naming the first input that cannot be used.

        Example:
            >>> [p.label for p in clf.predict(["a.png", "b.png"])]  # doctest: +SKIP
            ['3', '8']
        """
        from tfcnn.predict.run import predict_inputs

        return predict_inputs(self._model, inputs, top_k=top_k, tta=tta,
                              mirror=self.uses_mirrored_views(tta), preprocess=preprocess)

    def probabilities(self, inputs: Any, tta: bool = False,
                      preprocess: bool = True) -> np.ndarray:
        """float64 array (N, classes) of class probabilities for `inputs` (as `predict`).

        Example:
            >>> clf.probabilities(x_test[:2]).shape  # doctest: +SKIP
            (2, 10)
        """
        from tfcnn.predict.inputs import model_inputs
        from tfcnn.predict.run import batch_probabilities

        batch, _ = model_inputs(inputs, self.preprocessing, self.image_shape, preprocess)
        return batch_probabilities(self._model, batch, tta=tta,
                                   mirror=self.uses_mirrored_views(tta))

    def evaluate(self, dataset: str | None = None, data_dir: str | os.PathLike[str] | None
                 = None, tta: bool = False, report_dir: str | os.PathLike[str] | None = None
                 ) -> Report:
        """Accuracy, loss, per-class figures and the confusion matrix on a test set.

        `dataset`: a registered name or "folder:PATH" (default: the model's own); `data_dir`:
        where its files are (default: the run's setting, then the usual search); `tta`: as in
        `predict`; `report_dir`: also write the report folder (evaluation.json,
        evaluation.txt, PNG figures) there. Returns a `Report`.

        Example:
            >>> report = clf.evaluate(data_dir="../shared/datasets")  # doctest: +SKIP
            >>> round(report.accuracy, 4), report.confusion_matrix.shape  # doctest: +SKIP
            (0.9912, (10, 10))
        """
        return evaluate_models([self.path], dataset=dataset, data_dir=data_dir, tta=tta,
                               report_dir=report_dir, loaded=self._model)

    def explain(self, inputs: Any, method: str = "gradcam", target: int | str | None = None
                ) -> list[Any]:
        """Why the model answers what it answers: one `tfcnn.Explanation` per image.

        `method`: "gradcam", "integrated-gradients", "occlusion" or "all"; `target`: the
        class (index or name) to explain, default each image's predicted class. Each
        explanation has `.prediction`, `.heatmaps` (method → H×W array) and `.figure()`.

        Example:
            >>> e = clf.explain("digit.png", method="all")[0]  # doctest: +SKIP
            >>> sorted(e.heatmaps)                              # doctest: +SKIP
            ['gradcam', 'integrated-gradients', 'occlusion']
        """
        from tfcnn.explain import explain_images, parse_methods
        from tfcnn.predict.inputs import model_inputs

        methods = parse_methods(method)  # a bad name fails before any image is decoded
        batch, sources = model_inputs(inputs, self.preprocessing, self.image_shape)
        return explain_images(self._model, batch, methods=methods, targets=target,
                              sources=sources)

    def export(self, path: str | os.PathLike[str], format: str = "keras",
               quantize: str | None = None, force: bool = False) -> Path:
        """Write the model for deployment: "keras" (a .keras file loadable without tfcnn),
        "saved_model" (a folder) or "tflite" (with `quantize` None, "dynamic" or
        "float16"); the model takes float32 N×H×W×C images in [0, 1] and returns
        probabilities. An existing file is replaced only with `force=True`. Returns the path.

        Example:
            >>> clf.export("digits.tflite", format="tflite")  # doctest: +SKIP
            PosixPath('digits.tflite')
        """
        from tfcnn.export import export_model

        result = export_model(self._model, format, quantize or "none", Path(path), force=force,
                              source=self.path)
        return Path(result["path"])

    def __repr__(self) -> str:
        h, w, c = self.image_shape
        return (f"Classifier({str(self.path)!r}: {len(self.class_names)} classes, "
                f"{h}×{w}×{c} input, preprocessing {self.preprocessing!r})")


def load(path: str | os.PathLike[str]) -> Classifier:
    """The model of a run directory or a `.keras` file saved by tfcnn, as a `Classifier`.

    Raises `RunDirError` (no model, an unreadable file) or `ModelSpecError` (a model tfcnn
    did not train), both `tfcnn.TfcnnError`.

    Example:
        >>> clf = tfcnn.load("runs/mnist-tutorial-20261129-075518")  # doctest: +SKIP
        >>> clf.class_names[:3], clf.image_shape                      # doctest: +SKIP
        (['0', '1', '2'], (28, 28, 1))
    """
    from tfcnn.core.rundir import resolve_model_file
    from tfcnn.core.tfenv import import_tensorflow

    model_file = resolve_model_file(Path(path))  # a wrong path fails before TensorFlow loads
    import_tensorflow()
    from tfcnn.models.loader import load_checked_model

    return Classifier(load_checked_model(model_file), model_file)


def evaluate_models(model_files: list[Path], *, dataset: str | None = None,
                    data_dir: str | os.PathLike[str] | None = None, tta: bool = False,
                    report_dir: str | os.PathLike[str] | None = None,
                    loaded: Any = None) -> Report:
    """Evaluate one model (`loaded`, when already in memory) or the average of several
    (an ensemble), with optional TTA; write the report folder when `report_dir` is given."""
    from tfcnn.core.tfenv import import_tensorflow

    import_tensorflow()
    data_dir = None if data_dir is None else os.fspath(data_dir)
    if len(model_files) == 1 and not tta:
        from tfcnn.evaluation.report import evaluate_loaded
        from tfcnn.models.loader import load_checked_model

        model = loaded if loaded is not None else load_checked_model(model_files[0])
        evaluation = evaluate_loaded(model, Path(model_files[0]), dataset=dataset,
                                     data_dir=data_dir)
    else:
        from tfcnn.evaluation.ensemble import ensemble_evaluation

        evaluation = ensemble_evaluation(model_files, dataset=dataset, data_dir=data_dir,
                                         tta=tta)
    if report_dir is not None:
        evaluation.write(Path(report_dir))
    return Report(evaluation, ensemble=len(model_files) > 1 or tta)
