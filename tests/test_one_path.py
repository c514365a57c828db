"""One model, one path: no module outside the model layer runs a network for its answers.

Read from the source (an AST walk, no TensorFlow): a softmax, a Keras `.predict(` call, a
network called with `training=False`, or the Keras model unwrapped (`.keras_model`)
anywhere but the modules allowed below fails this test. Answers come from
`TrainedModel.predict_proba` / `.logits` (`tfcnn.models.trained`); everything else calls it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tfcnn"

# Where each construct may appear, and why.
ALLOWED = {
    # The one inference path: numpy and TensorFlow twins of the softmax, the runtimes.
    "softmax": {"models/trained.py"},
    # Calling a network in inference mode: the runtimes (for answers), training's test
    # step and batch-norm settling, and the attribution maths (gradients, feature maps),
    # which differentiates the network rather than asking it for answers.
    "training=False": {"models/runtimes.py", "models/trained.py", "models/mirror.py",
                       "training/steps.py", "explain/graph.py", "explain/methods.py"},
    # Unwrapping the Keras model: the model layer and the public API only.
    "keras_model": {"models", "api"},
    # Keras's own predict loop: only to run an exported .keras file in its own runtime, as
    # a client would (it would bypass the model's batching and calibration anywhere else).
    "predict(": {"export/verify.py"},
}


def _allowed(kind: str, relative: str) -> bool:
    places = ALLOWED[kind]
    return relative in places or relative.split("/")[0] in places


def _findings(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "keras_model":
            found.append(("keras_model", node.lineno))
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("softmax", "log_softmax") and not _is_ours(func):
                found.append(("softmax", node.lineno))
            if any(k.arg == "training" and isinstance(k.value, ast.Constant)
                   and k.value.value is False for k in node.keywords):
                found.append(("training=False", node.lineno))
            if name == "predict" and isinstance(func, ast.Attribute) and \
                    any(k.arg in ("batch_size", "verbose") for k in node.keywords):
                found.append(("predict(", node.lineno))
    return found


def _is_ours(func: ast.expr) -> bool:
    """`softmax(...)` imported from tfcnn.models.trained is the one path itself: allowed
    wherever it is imported (the check below makes sure it is imported from there)."""
    return isinstance(func, ast.Name)


def _imports_softmax_from_elsewhere(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module != "tfcnn.models.trained"
            and any(a.name in ("softmax", "log_softmax") for a in node.names)]


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_model_layer_runs_networks_for_answers(path):
    relative = str(path.relative_to(SRC))
    bad = [f"{relative}:{line}: {kind}" for kind, line in _findings(path)
           if not _allowed(kind, relative)]
    bad += [f"{relative}:{line}: softmax imported from outside tfcnn.models.trained"
            for line in _imports_softmax_from_elsewhere(path)]
    assert not bad, "\n".join(bad)


def test_the_check_finds_what_it_forbids(tmp_path):
    """The walker itself: each forbidden construct in a scratch module is found."""
    scratch = tmp_path / "scratch.py"
    scratch.write_text("import keras\n"
                       "p = keras.ops.softmax(model(x, training=False))\n"
                       "q = clf.keras_model\n"
                       "r = net.predict(x, batch_size=32)\n")
    kinds = sorted(kind for kind, _ in _findings(scratch))
    assert kinds == ["keras_model", "predict(", "softmax", "training=False"]
