"""`tfcnn evaluate` of an ensemble (several models) and/or with test-time augmentation (TTA).

Every member runs on the same test set. Its class probabilities (with TTA: averaged over
shifted copies of each image, `tfcnn.models.tta`) are averaged over the members, and the
report is the one `tfcnn.evaluation.report` writes, computed from those averaged
probabilities, with each member's own accuracy and loss added. Members must share the
dataset, class names and image shape; the first one that does not is named in a one-line error.

The test loss is the cross-entropy of the averaged probabilities, floored at 1e-7 as Keras
floors probabilities (so one confidently wrong image cannot make it infinite). Averaging
probabilities, not logits, is what makes the members vote: logits of separately trained
models are on unrelated scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcnn.core.errors import ModelSpecError
from tfcnn.data.files import ImageFiles
from tfcnn.evaluation import report as ev
from tfcnn.evaluation.calibration import probability_report
from tfcnn.models.trained import TrainedModel
from tfcnn.models.tta import DEFAULT_SHIFTS, average_probabilities

PROBABILITY_FLOOR = 1e-7
JSON_KEYS = ("members", "tta")  # what `--json` adds to evaluate's four keys here


def model_probabilities(model: TrainedModel, images: Any, tta: bool = False) -> np.ndarray:
    """float64 (N, classes) probabilities of uint8 `images` (N, H, W[, C]) or `ImageFiles`,
    from the model's one inference path, batch by batch (with `tta`, averaged over shifted,
    and for --hflip runs mirrored, copies of each image)."""
    parts = [model.predict_proba(batch, tta=tta) for batch in ev.image_batches(images)]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.class_names)))


def per_image_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each image's (averaged) probabilities, floored at PROBABILITY_FLOOR."""
    true = probs[np.arange(len(labels)), labels.astype(np.int64)]
    return -np.log(np.maximum(true, PROBABILITY_FLOOR))


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{"test_accuracy", "test_loss"} of probabilities (N, classes) against labels (N,)."""
    hits = probs.argmax(axis=1) == labels.astype(np.int64)
    return {"test_accuracy": round(float(hits.mean()), 6),
            "test_loss": round(float(per_image_loss(probs, labels).mean()), 6)}


def _check_member(model: TrainedModel, name: str, first: TrainedModel,
                  first_name: str) -> None:
    for what, mine, theirs in (("dataset", name, first_name),
                               ("class names", list(model.class_names), list(first.class_names)),
                               ("image shape", tuple(model.image_shape),
                                tuple(first.image_shape))):
        if mine != theirs:
            raise ModelSpecError(f"{model.path}: {what} {mine!r}, but {theirs!r} for "
                                 f"{first.path}; "
                                 "ensemble members must share the dataset, class names and "
                                 "image shape")


def _same_images(a: Any, b: Any) -> bool:
    """Equal image arrays, or the same streamed files (compared by name, not decoded)."""
    if isinstance(a, ImageFiles) or isinstance(b, ImageFiles):
        return isinstance(a, ImageFiles) and a.same_files(b)
    return bool(np.array_equal(a, b))


def _check_same_images(file: Path, test: ev.EvalSet, first_file: Path,
                       first: ev.EvalSet) -> None:
    if not (np.array_equal(test.labels, first.labels) and _same_images(test.images,
                                                                       first.images)):
        raise ModelSpecError(f"{file}: tested on other images than {first_file} (image-folder "
                             "runs with different seeds hold out different images); pass "
                             "--dataset folder:PATH with one test folder for every member")


def ensemble_evaluation(models: Sequence[TrainedModel], *, dataset: str | None = None,
                        data_dir: str | None = None, tta: bool = False) -> ev.Evaluation:
    """Evaluate the average of `models` (one or more; with `tta`, of their TTA
    probabilities); nothing is written.

    The report is `tfcnn.evaluation.report`'s, plus "members" (each one's "model_file",
    "test_accuracy", "test_loss", and with TTA "tta_test_accuracy", "tta_test_loss") and
    "tta" (None, or {"shifts": [[dy, dx], ...]}); "model_file" when there is one model.
    """
    members: list[dict[str, Any]] = []
    member_probs: list[np.ndarray] = []
    test: ev.EvalSet | None = None
    for model in models:
        name = dataset or model.dataset
        if test is None:
            first, first_name = model, name
        else:  # a mismatch is refused before this member's data is loaded
            _check_member(model, name, first, first_name)
        run = ev.run_dir_of(model.path) if model.path is not None else None
        member_test = ev.test_set_for(model, dataset, data_dir, run)
        if test is None:
            test = member_test
        else:
            _check_same_images(model.path, member_test, first.path, test)
        plain = model_probabilities(model, test.images)
        members.append({"model_file": str(model.path), **scores(plain, test.labels)})
        if tta:
            probs = model_probabilities(model, test.images, tta=True)
            members[-1].update({f"tta_{k}": v for k, v in scores(probs, test.labels).items()},
                               tta_mirror=model.tta_mirror)
        member_probs.append(probs if tta else plain)
    if test is None:
        raise ModelSpecError("nothing to evaluate: an ensemble needs at least one model")
    probs = average_probabilities(member_probs)
    report: dict[str, Any] = {"model_file": str(models[0].path)} if len(models) == 1 else {}
    mirrored = any(m.get("tta_mirror") for m in members)
    report.update(members=members, tta={"shifts": [list(s) for s in DEFAULT_SHIFTS],
                                        "mirror": mirrored} if tta else None)
    report.update(ev.build_report(test, probs, probs.argmax(axis=1),
                                  per_image_loss(probs, test.labels)))
    report.update(probability_report(probs, test.labels))
    # One model's training curves describe it; an ensemble's members have one each.
    run = (ev.run_dir_of(models[0].path) if len(models) == 1 and models[0].path is not None
           else None)
    return ev.Evaluation(report, test, probs, run, heading(report))


def heading(report: dict[str, Any]) -> list[str]:
    """The report's first lines: the model or ensemble, TTA, and each member's own figures."""
    members, tta = report["members"], report.get("tta")
    several = len(members) > 1
    lines = ([f"Ensemble of {len(members)} models: their class probabilities are averaged"]
             if several else [f"Model: {members[0]['model_file']}"])
    if tta:
        shifts = ", ".join(f"({dy}, {dx})" for dy, dx in tta["shifts"])
        lines.append(f"TTA: probabilities averaged over {len(tta['shifts'])} copies of each "
                     f"image shifted by (dy, dx) = {shifts} px"
                     + (", each also mirrored (the run trained with --hflip)"
                        if tta.get("mirror") else "")
                     + (", per model, then across models" if several else ""))
    for i, m in enumerate(members, start=1):
        own = f"test accuracy {100 * m['test_accuracy']:.2f}%, test loss {m['test_loss']:.4f}"
        if several:
            with_tta = (f"; with TTA {100 * m['tta_test_accuracy']:.2f}%, "
                        f"{m['tta_test_loss']:.4f}") if tta else ""
            lines.append(f"Member {i}: {own}{with_tta} ({m['model_file']})")
        elif tta:  # one model: the report below is its TTA figures; these are its plain ones
            lines.append(f"Without TTA: {own}")
    return lines


def default_report_dir(first_source: str | Path, members: int, tta: bool) -> Path:
    """report-ensemble/, report-tta/ or report-ensemble-tta/ beside the single model's report/
    (never over it), in the first source: a run or ensemble directory, or a model's folder."""
    source = Path(first_source)
    base = source if source.is_dir() else source.parent
    return base / ("report" + ("-ensemble" if members > 1 else "") + ("-tta" if tta else ""))
