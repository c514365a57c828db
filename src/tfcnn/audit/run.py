"""`run_audit`: load the images, check them, cross-train, find label issues, write the report.

The checks that need no model (class balance, odd images, duplicates and leaks) run first,
in seconds; then the K-fold cross-training (`tfcnn.audit.folds`, within the time budget),
then cleanlab on its out-of-sample probabilities (`tfcnn.audit.labels`). The report folder
(default `runs/audit-<dataset>-<time>/`) gets `audit.json`, `summary.txt`, the image grids
and the folds' run directories (`folds/fold-k/`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfcnn.audit.budget import DEFAULT_BUDGET, Planner, parse_duration
from tfcnn.audit.data import TEST, AuditData, load_audit_data
from tfcnn.audit.figures import label_issue_grid, pair_grid
from tfcnn.audit.folds import CrossResult, Recipe, check_folds, cross_train
from tfcnn.audit.labels import LabelIssue, label_issues
from tfcnn.audit.oddities import OddImage, balance, class_counts, odd_images
from tfcnn.audit.report import AuditReport
from tfcnn.audit.similar import MAX_PAIRS, Duplicates, Pair, find_duplicates
from tfcnn.core.errors import ConfigError
from tfcnn.core.fsutil import atomic_write_json, atomic_write_text
from tfcnn.core.rundir import unused_path
from tfcnn.data.folders import parse_folder_spec, parse_image_size

Progress = Callable[[str], None]
# Below this held-out agreement the fold models are too weak for their label issues to mean
# much (on the noisy digits it was 95-96%: 98% accuracy on the true labels, 5% flipped).
WEAK_AGREEMENT = 0.8


def default_out(dataset: str, now: float | None = None) -> Path:
    """runs/audit-<dataset>-<YYYYmmdd-HHMMSS> (a folder's own name), with a suffix if taken."""
    root = parse_folder_spec(dataset)
    name = root.resolve().name if root is not None else dataset
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "folder"
    return unused_path(
        Path("runs") / f"audit-{safe}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}")


def _check_out(out: Path) -> None:
    for name in ("audit.json", "folds"):
        if (out / name).exists():
            raise ConfigError(f"--out {out}: holds an audit already ({out / name}); choose "
                              "another --out")


def _image_options(dataset: str, image_size: str | None, rgb: bool) -> tuple[tuple[int, int],
                                                                              bool]:
    if parse_folder_spec(dataset) is None and (image_size is not None or rgb):
        raise ConfigError(f"--image-size, --rgb: only for image-folder datasets "
                          f"(--dataset folder:PATH), not {dataset!r}")
    return parse_image_size(image_size or "28"), not rgb


def run_audit(dataset: str, *, data_dir: str | os.PathLike[str] | None = None, folds: int = 5,
              time_budget: str | float | None = DEFAULT_BUDGET,
              out: str | os.PathLike[str] | None = None, image_size: str | None = None,
              rgb: bool = False, seed: int = 0, recipe: Recipe | None = None,
              progress: Progress | None = None) -> AuditReport:
    """Audit `dataset`; see `tfcnn.audit.audit` for the arguments."""
    started = time.perf_counter()
    budget_s = parse_duration(time_budget)
    size, grayscale = _image_options(dataset, image_size, rgb)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"--seed: expected a non-negative integer, got {seed!r}")
    check_folds(folds, 2 * folds)  # the range; the image count once loaded
    out_path = Path(out) if out is not None else default_out(dataset)
    _check_out(out_path)
    tell = progress or (lambda line: None)
    data = load_audit_data(dataset, data_dir, image_size=size, grayscale=grayscale)
    check_folds(folds, len(data.labels))
    seconds = {"load": time.perf_counter() - started}
    tell(f"{len(data.labels):,} images of {dataset} loaded in {seconds['load']:.1f} s"
         + (f" ({len(data.skipped)} unreadable, left out)" if data.skipped else ""))
    mark = time.perf_counter()
    odd, pairs = odd_images(data), find_duplicates(data)
    seconds["checks"] = time.perf_counter() - mark
    tell(f"duplicates and odd images checked in {seconds['checks']:.1f} s; cross-training "
         f"{folds} folds" + (f" within {time_budget}" if budget_s else ""))
    recipe = (recipe or Recipe()).for_data(len(data.class_names), data.images.ndim == 4)
    from tfcnn.core.tfenv import import_tensorflow

    import_tensorflow()
    mark = time.perf_counter()
    planner = Planner(budget_s, folds, recipe.epochs, mark)
    cross = cross_train(data, out_path / "folds", folds=folds, recipe=recipe, seed=seed,
                        planner=planner, progress=tell)
    seconds["cross_training"] = time.perf_counter() - mark
    mark = time.perf_counter()
    issues = label_issues(data.labels, cross.probabilities, data.files, data.class_names)
    seconds["label_issues"] = time.perf_counter() - mark
    report = _report(data, cross, issues, pairs, odd, out_path, seconds,
                     {"folds": folds, "time_budget_s": budget_s, "network": recipe.model,
                      "max_epochs": recipe.epochs, "seed": seed,
                      "image_size": list(data.images.shape[1:3]),
                      "channels": 1 if data.images.ndim == 3 else 3,
                      "filter_by": "prune_by_class"})
    _write(report, data, issues, pairs, started)
    return report


def _pair_counts(data: AuditData, pairs: Duplicates) -> dict[str, int]:
    return {"duplicates": len(pairs.duplicates), "leaks": len(pairs.leaks),
            "duplicates_exact": sum(p.exact for p in pairs.duplicates),
            "duplicates_near": sum(not p.exact for p in pairs.duplicates),
            "leaks_exact": sum(p.exact for p in pairs.leaks),
            "leaks_near": sum(not p.exact for p in pairs.leaks),
            "pairs_with_different_labels": pairs.conflicting(data.labels)}


def _report(data: AuditData, cross: CrossResult, issues: list[LabelIssue], pairs: Duplicates,
            odd: list[OddImage], out: Path, seconds: dict[str, float],
            settings: dict[str, Any]) -> AuditReport:
    classes = class_counts(data)
    notes = list(cross.notes)
    held = sum(f.held_out for f in cross.folds)
    agreement = sum(f.agreement * f.held_out for f in cross.folds) / max(held, 1)
    if agreement < WEAK_AGREEMENT:
        notes.append(f"the fold models predicted only {100 * agreement:.0f}% of the held-out "
                     "images as labelled: most label issues listed are the models' errors, "
                     "not the labels'; give a longer --time-budget or another --model")
    if not data.has_test_split:
        notes.append("no test split (no train/ and test/ folders): leaks were not checked; "
                     "duplicates listed will straddle any split tfcnn train makes")
    return AuditReport(
        dataset=data.name, files=data.files, class_names=data.class_names, classes=classes,
        balance=balance(classes), label_issues=[i.to_json() for i in issues],
        duplicates=[p.to_json(data) for p in pairs.duplicates[:MAX_PAIRS]],
        leaks=[p.to_json(data) for p in pairs.leaks[:MAX_PAIRS]],
        counts={"label_issues": len(issues), **_pair_counts(data, pairs),
                "odd_images": len(odd), "unreadable": len(data.skipped)},
        odd_images=[o.to_json() for o in odd],
        unreadable=[{"file": f, "reason": r} for f, r in data.skipped],
        folds=[f.to_json() for f in cross.folds], settings=settings,
        seconds={k: round(v, 2) for k, v in seconds.items()}, notes=notes, path=out,
        probabilities=cross.probabilities,
        fix_rows=fix_rows(data, issues, pairs, odd))


def fix_rows(data: AuditData, issues: list[LabelIssue], pairs: Duplicates,
             odd: list[OddImage]) -> list[dict[str, Any]]:
    """The `--write-fixes` rows: label issues, then the second image of each duplicate
    pair (the test one of a leak), then odd images; each file once."""
    names = data.class_names
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()

    def add(index: int, suggested: str, score: str, issue: str) -> None:
        if index not in seen:
            seen.add(index)
            # Absolute paths: --apply may run from another folder than the audit.
            rows.append({"file": _absolute(data.files[index]) if data.is_folder
                         else data.files[index], "given": names[data.labels[index]],
                         "suggested": suggested, "score": score, "issue": issue,
                         "root": _absolute(data.roots[index]) if data.is_folder else ""})

    for i in issues:
        add(i.index, i.suggested, f"{i.score:.6f}", "label")
    for kind, found in (("duplicate", pairs.duplicates), ("leak", pairs.leaks)):
        for pair in found:
            keep, other = _ordered(data, pair)
            how = "exact" if pair.exact else f"distance {pair.distance:.4f}"
            add(other, names[data.labels[other]], "", f"{kind} of {data.files[keep]} ({how})")
    for o in odd:
        add(o.index, names[data.labels[o.index]], "", f"odd: {o.kind}: {o.detail}")
    return rows


def _absolute(path: str) -> str:
    return str(Path(path).absolute())


def _ordered(data: AuditData, pair: Pair) -> tuple[int, int]:
    """(the image to keep, its copy): of a leak, the test image is the copy."""
    if data.splits[pair.a] == TEST and data.splits[pair.b] != TEST:
        return pair.b, pair.a
    return pair.a, pair.b


def _write(report: AuditReport, data: AuditData, issues: list[LabelIssue], pairs: Duplicates,
           started: float) -> None:
    out = report.path
    out.mkdir(parents=True, exist_ok=True)
    mark = time.perf_counter()
    if issues:
        label_issue_grid(data, issues, out / "label_issues.png")
        report.figures.append("label_issues.png")
    for name, found, title in (("duplicates.png", pairs.duplicates, "Duplicates"),
                               ("leaks.png", pairs.leaks, "Leaks across train/test")):
        if found:
            pair_grid(data, found, title, out / name)
            report.figures.append(name)
    report.seconds["figures"] = round(time.perf_counter() - mark, 2)
    report.seconds["total"] = round(time.perf_counter() - started, 2)
    atomic_write_json(out / "audit.json", report.to_json())
    atomic_write_text(out / "summary.txt", report.summary() + "\n")
