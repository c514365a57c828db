"""The progress bar `tfcnn.train` shows for each epoch: a widget in Jupyter, a text bar on a
terminal, and none in a log file or a pipe (whose file would fill with carriage returns)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (as tqdm.autonotebook tells)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bars(verbose: bool, epochs: int) -> Callable[[int, int, int], Any] | None:
    """A progress bar per epoch: a widget in a notebook (with ipywidgets: the `notebook`
    extra), on a terminal a text bar; none when stderr is a file or a pipe, whose log would
    fill with the bar's carriage returns."""
    if not verbose:
        return None
    if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as bar

        disable: bool | None = False
    else:
        from tqdm import tqdm as bar

        disable = None  # tqdm's "off unless the output is a terminal"

    def progress(epoch: int, steps: int, done: int) -> Any:
        return bar(total=steps, initial=done, desc=f"Epoch {epoch}/{epochs}", unit="step",
                   leave=False, disable=disable)
    return progress
