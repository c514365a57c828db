"""The evaluation report as text: summary, per-class table, confusion matrix, confusions,
files written (what `tfcnn evaluate` prints and evaluation.txt holds). Plain Python."""

from __future__ import annotations

from typing import Any

TOP_K = 5  # the report's top-k accuracy (for datasets of at least 10 classes)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, two spaces between columns."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                      for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in [header, *rows]]


def _confusion_text(cm: list[list[int]], names: list[str]) -> list[str]:
    # Long names (Fashion-MNIST's "T-shirt/top") would make ten columns unreadably wide:
    # columns then carry the class index, and the rows say which index is which name.
    short = max(len(n) for n in names) <= 5
    cols = names if short else [str(i) for i in range(len(names))]
    rows = [[name if short else f"{i} {name}", *map(str, row)]
            for i, (name, row) in enumerate(zip(names, cm, strict=True))]
    return _table(["true \\ predicted", *cols], rows)


def _calibration_lines(report: dict[str, Any]) -> list[str]:
    if report.get("ece") is None:
        return []
    if report.get("ece_uncalibrated") is None:
        return [f"Calibration: ECE {report['ece']:.4f}, NLL {report['nll']:.4f}, "
                f"Brier {report['brier']:.4f}"]
    return [f"Calibration (temperature {report['temperature']:g}): ECE {report['ece']:.4f} "
            f"(uncalibrated {report['ece_uncalibrated']:.4f}), NLL {report['nll']:.4f} "
            f"({report['nll_uncalibrated']:.4f}), Brier {report['brier']:.4f} "
            f"({report['brier_uncalibrated']:.4f})"]


def format_evaluation(report: dict[str, Any], heading: list[str] | None = None) -> str:
    """The report as text: summary, per-class table, confusion matrix, confusions, files.
    `heading` (e.g. an ensemble's description) replaces the first line, "Model: FILE"."""
    n, acc = report["num_images"], report["test_accuracy"]
    cm = report["confusion_matrix"]
    correct = sum(cm[i][i] for i in range(len(cm)))
    lines = [*(heading or [f"Model: {report['model_file']}"]),
             f"Data: {report['dataset']} test set from {report.get('data_source', '?')} "
             f"({n:,} images)",
             f"Test accuracy {100 * acc:.2f}% ({correct:,} of {n:,} correct), "
             f"test loss {report['test_loss']:.4f}"]
    if f"top{TOP_K}_accuracy" in report:
        lines.append(f"Top-{TOP_K} accuracy {100 * report[f'top{TOP_K}_accuracy']:.2f}% "
                     f"(the true class among the {TOP_K} likeliest)")
    if report.get("skipped_files"):
        lines.append(f"Skipped {report['skipped_files']} unreadable file(s) in the folder")
    lines += _calibration_lines(report)
    lines += ["", "Per class:"]
    rows = [[r["class"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
             str(r["support"])] for r in report["per_class"]]
    for kind, avg in report.get("averages", {}).items():
        rows.append([f"{kind} avg", f"{avg['precision']:.4f}", f"{avg['recall']:.4f}",
                     f"{avg['f1']:.4f}", str(n)])
    lines += _table(["class", "precision", "recall", "f1", "support"], rows)
    names = [r["class"] for r in report["per_class"]]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):"]
    lines += _confusion_text(cm, names)
    lines += ["", "Most confused (true -> predicted):"]
    lines += [f"  {c['true']} -> {c['predicted']}: {c['count']} images"
              for c in report["most_confused"]] or ["  none: every image is classified right"]
    if report.get("files"):
        lines += ["", "Files written:"]
        width = max(len(k) for k in report["files"])
        lines += [f"  {k.ljust(width)}  {v}" for k, v in report["files"].items()]
    return "\n".join(lines)
