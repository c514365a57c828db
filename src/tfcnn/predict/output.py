"""`tfcnn predict`'s output: an aligned table or CSV of the results, and the accuracy on
images whose class folder is known."""

from __future__ import annotations

import csv
import io
from typing import Any


def accuracy_line(results: list[dict[str, Any]]) -> str:
    """"Accuracy on N images in class folders: X% (k correct)", or "" when none has one."""
    labelled = [r for r in results if "expected" in r]
    if not labelled:
        return ""
    correct = sum(r["correct"] for r in labelled)
    return (f"Accuracy on {len(labelled)} image{'s' if len(labelled) != 1 else ''} in class "
            f"folders: {100 * correct / len(labelled):.2f}% ({correct} correct)")


def _top_text(result: dict[str, Any]) -> str:
    return "  ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in result["top_k"])


def format_table(results: list[dict[str, Any]], skipped: list[Any] | None = None) -> str:
    """An aligned table, one row per file (errors in place of the prediction), and a count
    (with the files in folders left out for not being named as images, `skipped`)."""
    k = max((len(r["top_k"]) for r in results if "error" not in r), default=0)
    header = ("file", "label", "probability", f"top {k}" if k else "")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["file"], "error", "", r["error"]))
        else:
            label = f"{r['label']} (unknown)" if r.get("unknown") else str(r["label"])
            rows.append((r["file"], label, f"{100 * r['probability']:.1f}%", _top_text(r)))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]

    def line(row: tuple[str, ...]) -> str:
        return (f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  "
                f"{row[3]}").rstrip()

    failed = sum("error" in r for r in results)
    summary = f"{len(results) - failed} predicted" + (f", {failed} failed" if failed else "")
    if skipped:
        summary += (f", {len(skipped)} other file(s) in the folders skipped (not named as "
                    f"images, e.g. {skipped[0]})")
    accuracy = accuracy_line(results)
    return "\n".join([line(header), *(line(row) for row in rows), summary,
                      *([accuracy] if accuracy else [])])


def format_csv(results: list[dict[str, Any]]) -> str:
    """CSV with a header: file,label,index,probability, then label_i,probability_i for each
    of the top k, then error (empty for a prediction; the other cells empty for an error)."""
    k = max((len(r["top_k"]) for r in results if "error" not in r), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    pairs = [name for i in range(1, k + 1) for name in (f"label_{i}", f"probability_{i}")]
    writer.writerow(["file", "label", "index", "probability", *pairs, "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["file"], "", "", "", *[""] * (2 * k), r["error"]])
            continue
        tops = [cell for t in r["top_k"] for cell in (t["label"], t["probability"])]
        tops += [""] * (2 * k - len(tops))
        writer.writerow([r["file"], r["label"], r["index"], r["probability"], *tops, ""])
    return out.getvalue()
