"""`tfcnn explain --layers` on a network with many convolutions: at most `--max-layers`
of them, evenly spaced, and the `--max-channels` strongest channels of each; figures closed
once written; a progress bar on a terminal; heatmaps rounded in JSON (issue 25)."""

from __future__ import annotations

import decimal
import io
import json
from pathlib import Path

import numpy as np
import pytest

from support import draw_digit
from support import parse_explain as parse
from tfcnn import cli_explain
from tfcnn.explain import figures
from tfcnn.explain.explanation import MAX_CHANNELS, MAX_LAYERS, heatmap_json
from tfcnn.explain.layers import chosen_layers, strongest_channels

DIGITS = tuple("0123456789")


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory) -> Path:
    """Ten same-padded 4-channel convolutions: more than `MAX_LAYERS`."""
    from tfcnn.models.network import build_model

    path = tmp_path_factory.mktemp("deep") / "deep.keras"
    build_model("-".join(["4C3p"] * 10) + "-D10", (28, 28, 1), DIGITS, seed=0,
                prepare="mnist", dataset="mnist").save(path)
    return path


@pytest.fixture(scope="module")
def digit_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digit") / "three.png"
    draw_digit(3).save(path)
    return path


def fake_maps(sizes: list[int], channels: int = 3) -> list[tuple[str, np.ndarray]]:
    return [(f"conv{i}", np.ones((s, s, channels), np.float32)) for i, s in enumerate(sizes)]


def test_layers_are_evenly_spaced_and_skip_1x1_maps_when_capped():
    maps = fake_maps([8 if i % 4 else 1 for i in range(52)])  # every 4th one 1×1 (SE)
    picked = [name for name, _ in chosen_layers(maps, 8)]
    spatial = [name for name, m in maps if m.shape[0] > 1]
    assert len(picked) == 8 and len(set(picked)) == 8
    assert picked[0] == spatial[0] and picked[-1] == spatial[-1]
    assert all(name in spatial for name in picked)
    positions = [spatial.index(name) for name in picked]
    assert max(np.diff(positions)) - min(np.diff(positions)) <= 1  # evenly spaced
    assert len(chosen_layers(maps, 0)) == 52  # 0: all, 1×1 ones too
    assert [n for n, _ in chosen_layers(maps[:5], 8)] == [n for n, _ in maps[:5]]


def test_the_strongest_channels_come_first():
    maps = np.zeros((4, 4, 5), np.float32)
    for k, strength in enumerate([0.1, -3.0, 0.5, 2.0, 0.5]):  # |mean| counts: -3 is strong
        maps[..., k] = strength
    assert strongest_channels(maps, 3) == [1, 3, 2]  # ties: the lower index first
    assert strongest_channels(maps, 0) == [0, 1, 2, 3, 4]
    assert strongest_channels(maps, 9) == [0, 1, 2, 3, 4]
    from tfcnn.core.errors import ConfigError

    with pytest.raises(ConfigError, match="max_channels: expected 0 .all. or a positive"):
        strongest_channels(maps, -1)


def drawn_grids(monkeypatch) -> list[tuple[str, list[int], np.ndarray]]:
    """Record each feature-map grid drawn: (layer, channels shown, the layer's maps)."""
    drawn: list[tuple[str, list[int], np.ndarray]] = []
    real = figures.feature_map_figure

    def spy(name, maps, channels=None):
        drawn.append((name, list(channels), maps))
        return real(name, maps, channels)

    monkeypatch.setattr(figures, "feature_map_figure", spy)
    return drawn


def test_layers_are_capped_by_default(deep_model, digit_file, tmp_path, capsys, monkeypatch):
    drawn = drawn_grids(monkeypatch)
    assert cli_explain.run(parse(str(deep_model), str(digit_file), "--layers", "--out",
                                 str(tmp_path), "--json")) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert MAX_LAYERS == 8 and MAX_CHANNELS == 16
    assert len(drawn) == 8 and list(result["layers"]) == [d[0] for d in drawn] + ["filters"]
    assert drawn[0][0] == "conv1" and drawn[-1][0] == "conv10"
    assert all(channels == [0, 1, 2, 3] for _, channels, _ in drawn)  # 4 < 16: all, in order
    assert all(Path(p).is_file() for p in result["layers"].values())


def test_max_layers_and_max_channels(deep_model, digit_file, tmp_path, capsys, monkeypatch):
    drawn = drawn_grids(monkeypatch)
    assert cli_explain.run(parse(str(deep_model), str(digit_file), "--layers",
                                 "--max-layers", "3", "--max-channels", "2",
                                 "--out", str(tmp_path))) == 0
    assert [name for name, _, _ in drawn] == ["conv1", "conv6", "conv10"]
    for _, channels, maps in drawn:  # the two of highest mean |activation|, strongest first
        assert maps.shape == (28, 28, 4)
        strength = np.abs(maps).mean(axis=(0, 1))
        assert len(channels) == 2 and strength[channels[0]] >= strength[channels[1]]
        assert strength[channels[1]] >= np.delete(strength, channels).max()
    assert "layers:" in capsys.readouterr().out
    drawn.clear()
    assert cli_explain.run(parse(str(deep_model), str(digit_file), "--layers",
                                 "--max-layers", "0", "--out", str(tmp_path))) == 0
    assert len(drawn) == 10  # 0: every convolution


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_limit_is_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit) as exited:
        parse("model.keras", "x.png", "--max-layers", value)
    assert exited.value.code == 2
    assert f"expected 0 (all) or a positive integer, got '{value}'" in capsys.readouterr().err


def test_figures_are_closed_once_written(tmp_path):
    fig = figures.feature_map_figure("conv", np.random.default_rng(0).random((5, 5, 3)))
    assert fig.axes
    figures.save_and_close(fig, tmp_path / "grid.png")
    assert not fig.axes and (tmp_path / "grid.png").stat().st_size > 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_counts_the_images_on_a_terminal(deep_model, digit_file, tmp_path,
                                               monkeypatch):
    other = tmp_path / "seven.png"
    draw_digit(7).save(other)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli_explain.run(parse(str(deep_model), str(digit_file), str(other),
                                 "--out", str(tmp_path / "out"))) == 0
    assert "explained" in terminal.getvalue() and "2/2" in terminal.getvalue()
    log = io.StringIO()  # not a terminal: no bar, no carriage returns in the log
    monkeypatch.setattr("sys.stderr", log)
    assert cli_explain.run(parse(str(deep_model), str(digit_file), str(other),
                                 "--out", str(tmp_path / "out"))) == 0
    assert log.getvalue() == ""


def decimals_of(text: str, key: str) -> int:
    """The most decimals a number under `key` has in the JSON `text`."""
    def numbers(value):
        if isinstance(value, list):
            for item in value:
                yield from numbers(item)
        else:
            yield value

    body = json.loads(text, parse_float=decimal.Decimal)
    return max(-min(0, int(n.as_tuple().exponent)) if isinstance(n, decimal.Decimal) else 0
               for n in numbers(body[key]))


def test_heatmaps_are_rounded_in_json():
    heat = np.array([[0.0792, 1.0], [0.33333334, 0.5]], np.float32)  # 0.0792 is 0.07919999..
    assert json.dumps(heat.tolist()).count("0.0791999") == 1  # what float32 prints
    assert json.dumps({"h": heatmap_json(heat)}) == '{"h": [[0.0792, 1.0], [0.3333, 0.5]]}'
    small = np.array([0.031234567, -0.012345678, 0.0], np.float32)  # integrated gradients
    assert heatmap_json(small) == [0.03123, -0.01235, 0.0]  # 4 digits of its largest
    assert decimals_of(json.dumps({"h": heatmap_json(heat * 300)}), "h") <= 2


def test_explain_route_heatmaps_have_at_most_4_decimals(deep_model):
    from fastapi.testclient import TestClient

    from tfcnn.models.loader import load_checked_model
    from tfcnn.serve.app import create_app

    image = np.zeros((28, 28))
    image[5:23, 12:16] = 0.7
    with TestClient(create_app(load_checked_model(deep_model), "deep")) as client:
        answer = client.post("/explain?feature_maps=false", json={"image": image.tolist()})
    assert answer.status_code == 200
    assert np.array(answer.json()["heatmap"]).shape == (28, 28)
    assert np.array(answer.json()["heatmap"]).max() > 0  # something to round
    assert decimals_of(answer.text, "heatmap") <= 4


def test_an_explanation_as_a_dict_has_rounded_heatmaps():
    from tfcnn.core.prediction import Prediction
    from tfcnn.explain.explanation import Explanation

    rng = np.random.default_rng(1)
    e = Explanation(Prediction.from_probabilities([0.2, 0.8], ["a", "b"], 2, source="x"),
                    {"gradcam": rng.random((3, 3), dtype=np.float32)},
                    rng.random((3, 3, 1), dtype=np.float32), 1, "b")
    d = e.to_dict()
    assert d["label"] == "b" and d["target"] == "b" and d["target_index"] == 1
    assert decimals_of(json.dumps(d["heatmaps"]), "gradcam") <= 4
    np.testing.assert_allclose(d["heatmaps"]["gradcam"], e.heatmaps["gradcam"], atol=5e-5)
