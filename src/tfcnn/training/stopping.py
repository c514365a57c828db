"""Ending a run before its last planned epoch: `--early-stop N` and a time budget's guard.

A stop rule reads the epoch records so far and gives the reason to stop, or None. Rules
depend on the records alone (metrics.json keeps them), so a resumed run stops exactly
where the uninterrupted one did, and resuming a run that stopped says it has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

StopRule = Callable[[list[dict[str, Any]]], "str | None"]


def best_loss_epoch(records: list[dict[str, Any]]) -> int:
    """The epoch with the lowest validation loss (the first of equals)."""
    best = min(records, key=lambda r: (r["val_loss"], r["epoch"]))
    return int(best["epoch"])


def patience_ran_out(records: list[dict[str, Any]], patience: int) -> str | None:
    """Why to stop when the validation loss has not improved for `patience` epochs.

    >>> losses = [0.5, 0.4, 0.45, 0.41]
    >>> records = [{"epoch": e, "val_loss": v} for e, v in enumerate(losses, 1)]
    >>> print(patience_ran_out(records, 2))
    early stop after epoch 4: validation loss has not improved for 2 epochs (best 0.4000 at epoch 2)
    >>> patience_ran_out(records, 3) is None
    True
    """
    judged = [r for r in records if r.get("val_loss") is not None]
    if not judged:
        return None
    best = best_loss_epoch(judged)
    last = int(judged[-1]["epoch"])
    if last - best < patience:
        return None
    loss = next(r["val_loss"] for r in judged if r["epoch"] == best)
    return (f"early stop after epoch {last}: validation loss has not improved for "
            f"{last - best} epochs (best {loss:.4f} at epoch {best})")


def early_stop_rule(patience: int | None) -> StopRule | None:
    """`--early-stop N`'s rule, or None when it is off."""
    if not patience:
        return None
    return lambda records: patience_ran_out(records, patience)


def first_reason(rules: tuple[StopRule, ...], records: list[dict[str, Any]]) -> str | None:
    """The first rule's reason to stop, or None."""
    for rule in rules:
        reason = rule(records)
        if reason:
            return reason
    return None
