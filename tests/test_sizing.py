"""training/sizing.py: named networks and presets get a head of one logit per class; a
written notation that disagrees is refused before any image is decoded."""

from __future__ import annotations

import json

import pytest

from support import make_shapes
from tfcnn.cli import main
from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ModelSpecError
from tfcnn.spec.notation import resolve_model
from tfcnn.training.sizing import Head, fit_head, is_named_network


def _head(model: str, classes: int, **settings) -> Head:
    config = TrainConfig(model=model, **settings)
    name, written = resolve_model(config.model)
    return fit_head(config, name, written, "folder:x", classes)


def test_a_named_network_gets_one_output_per_class():
    head = _head("tutorial", 3)
    assert head.notation.endswith("-D3") and head.sized_from == 10
    assert head.describe() == "head sized to 3 classes (D10 -> D3)"


def test_a_network_that_already_fits_is_left_as_it_is():
    head = _head("tutorial", 10)
    assert head.sized_from is None and head.describe() == ""
    assert head.notation == resolve_model("tutorial")[1]


def test_a_written_notation_is_taken_as_written():
    assert _head("8C3-P2-D3", 3).notation == "8C3-P2-D3"
    with pytest.raises(ModelSpecError) as caught:
        _head("8C3-P2-D10", 3)
    message = str(caught.value)
    assert "gives 10 outputs" in message and "has 3 classes" in message
    assert "end the notation with D3" in message and "\n" not in message


def test_a_presets_own_network_counts_as_named():
    from tfcnn.core.presets import config_from_preset

    config = config_from_preset("photo", {"dataset": "folder:photos", "seed": 1})
    assert is_named_network(config, resolve_model(config.model)[0])
    assert not is_named_network(config.replace(model="8C3-P2-D10"), "8C3-P2-D10")


def test_a_three_class_folder_trains_with_the_default_network(tmp_path, capsys):
    root = make_shapes(tmp_path / "shapes", per_class=8)
    code = main(["train", "--dataset", f"folder:{root}", "--epochs", "1", "--batch-size", "8",
                 "--seed", "1", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    model_line = next(line for line in out.splitlines() if line.startswith("Model:"))
    assert "head sized to 3 classes (D10 -> D3)" in model_line
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "tutorial"  # the name, as given; the network is sized at build
    import numpy as np

    import tfcnn

    clf = tfcnn.load(tmp_path / "run")
    assert list(clf.class_names) == ["circle", "square", "triangle"]
    assert clf.predict_proba(np.zeros((2, 28, 28), np.uint8)).shape == (2, 3)


def test_a_mismatched_head_is_refused_before_decoding(tmp_path, capsys):
    # Not one readable image: decoding them would fail with another message.
    for name in ("circle", "square", "triangle"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        (tmp_path / "bad" / name / "0.png").write_text("not an image")
    code = main(["train", "--dataset", f"folder:{tmp_path / 'bad'}", "--model", "8C3-P2-D10",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "the last layer gives 10 outputs" in err and "3 classes" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
