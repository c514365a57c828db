"""The docstring examples of the public API run, on a tiny model trained here, and say what
they show (doctest compares their output); none is skipped."""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

from support import draw_digit

# Every module whose docstrings hold examples a user reads (the public names and what they
# return); `test_every_example_runs_somewhere` fails when an example lives elsewhere.
MODULES = ["tfcnn", "tfcnn.api.classifier", "tfcnn.api.report", "tfcnn.api.training",
           "tfcnn.core.prediction", "tfcnn.models.calibration", "tfcnn.models.trained",
           "tfcnn.images.preprocessor", "tfcnn.data.files", "tfcnn.predict.inputs",
           "tfcnn.datasets", "tfcnn.explain.explanation", "tfcnn.core.durations",
           "tfcnn.spec.notation", "tfcnn.training.stopping", "tfcnn.steer.runs",
           "tfcnn.steer.show", "tfcnn.steer.lr_find", "tfcnn.steer.tune"]
SRC = Path(__file__).resolve().parents[1] / "src" / "tfcnn"


@pytest.fixture(scope="module")
def namespace(shared_datasets_dir, tmp_path_factory) -> dict:
    """What the examples refer to: a small digit run (`run_dir`, `clf`), two drawn digit
    files and their folder, the data folder, a scratch folder `tmp`."""
    import numpy as np

    import tfcnn

    tmp = tmp_path_factory.mktemp("doctest")
    run = tfcnn.train(model="8C3-P2-16C3-P2-D10", epochs=1, limit_train=3000,
                      limit_test=500, seed=0, data_dir=shared_datasets_dir,
                      out=tmp / "mnist-small", verbose=False)
    folder = tmp / "digits"
    folder.mkdir()
    files = []
    for digit in (7, 2):
        path = folder / f"{digit}.png"
        draw_digit(digit).save(path)
        files.append(str(path))
    return {"tfcnn": tfcnn, "np": np, "run_dir": run.path, "clf": tfcnn.load(run.path),
            "digit_files": files, "digit_folder": str(folder),
            "data_dir": str(shared_datasets_dir), "tmp": tmp}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, namespace, monkeypatch):
    monkeypatch.chdir(namespace["tmp"])
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    tests = [t for t in doctest.DocTestFinder().find(module, globs={**vars(module), **namespace})
             if t.examples]
    for test in tests:
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
    assert tests, f"{name}: no examples"


def test_no_example_is_skipped_and_every_example_runs_somewhere():
    skipped, elsewhere = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        module = ".".join(("tfcnn", *path.relative_to(SRC).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        if "+SKIP" in text:
            skipped.append(module)
        if ">>> " in text and module not in MODULES:
            elsewhere.append(module)
    assert not skipped, f"examples skipped in {skipped}"
    assert not elsewhere, f"examples in modules the doctests do not run: {elsewhere}"
