"""Layer notation parsing (pure Python, no TensorFlow)."""

import pytest

from tfcnn.core.errors import ModelSpecError
from tfcnn.models import notation as nt


def test_tutorial_notation_parses_to_its_layers():
    assert nt.parse_notation(nt.PRESETS["tutorial"]) == [
        nt.Conv(32, 3), nt.Pool(2), nt.Conv(32, 3), nt.Pool(2), nt.Conv(32, 5, stride=2),
        nt.BatchNorm(), nt.Dropout(0.4), nt.Dense(128), nt.Dense(10)]


def test_lowercase_tokens_are_accepted():
    assert nt.parse_notation("16c5s2-p2-bn-do25-d10") == [
        nt.Conv(16, 5, 2), nt.Pool(2), nt.BatchNorm(), nt.Dropout(0.25), nt.Dense(10)]


@pytest.mark.parametrize(("text", "token_no", "token"), [
    ("32C3-P2-X9-D10", 3, "X9"),
    ("32C3--D10", 2, ""),
    ("32C3-P0-D10", 2, "P0"),
    ("32C3-DO100-D10", 2, "DO100"),
    ("0C3-D10", 1, "0C3"),
    ("32C3-D10-P2-D10", 3, "P2"),
    ("32C3-P2", 2, "P2"),
    ("32C3S0-D10", 1, "32C3S0"),
    ("31M3-D10", 1, "31M3"),
    ("8C3-8M3-D10", 2, "8M3"),
])
def test_bad_notation_names_the_token(text, token_no, token):
    with pytest.raises(ModelSpecError) as err:
        nt.parse_notation(text)
    message = str(err.value)
    assert f"token {token_no} {token!r}" in message
    assert "\n" not in message


def test_empty_notation_is_an_error():
    with pytest.raises(ModelSpecError, match="empty"):
        nt.parse_notation("  ")


def test_resolve_model_accepts_presets_and_notation():
    assert nt.resolve_model("tutorial") == ("tutorial", nt.PRESETS["tutorial"])
    assert nt.resolve_model("Tutorial")[0] == "tutorial"
    assert nt.resolve_model("8c3-d10") == ("8C3-D10", "8C3-D10")


def test_resolve_model_rejects_unknown_preset_with_the_known_names():
    with pytest.raises(ModelSpecError, match="unknown preset.*tutorial"):
        nt.resolve_model("resnet")


def test_output_units_is_the_last_dense():
    assert nt.output_units("32C3-D128-D7") == 7


def test_check_output_shape_rejects_a_net_that_shrinks_below_one_pixel():
    nt.check_output_shape(nt.PRESETS["tutorial"], (28, 28, 1))  # ends at 1x1: fine
    with pytest.raises(ModelSpecError, match="token 5 'P2'.*below 1x1"):
        nt.check_output_shape("32C5S2-32C5S2-P2-P2-P2-D10", (28, 28, 1))


def test_mirror_convolutions_parse_and_may_be_followed_by_ordinary_ones():
    assert nt.parse_notation("8m3-BN-16M3S2-8C3-D10") == [
        nt.Conv(8, 3, mirror=True), nt.BatchNorm(), nt.Conv(16, 3, 2, mirror=True),
        nt.Conv(8, 3), nt.Dense(10)]


@pytest.mark.parametrize(("text", "size", "token", "columns"), [
    ("8M3-P2-D10", 29, "P2", 27),           # a 2x2 pool over 27 columns drops the last one
    ("8M4S2-D10", 27, "8M4S2", 27),         # stride 2 over 27 - 4 = 23 steps: one over
    ("8M3-P2-8M3-P2-D10", 28, "P2", 11),    # 28 -> 26 -> 13 -> 11: the second pool
])
def test_check_output_shape_rejects_uneven_strides_and_pools_in_the_mirror_part(
        text, size, token, columns):
    with pytest.raises(ModelSpecError, match=f"{token!r} leaves 1 of {columns} columns"):
        nt.check_output_shape(text, (size, size, 1))


def test_check_output_shape_allows_uneven_pools_after_the_mirror_part():
    nt.check_output_shape("8M3-8C3-P2-D10", (29, 29, 1))  # 25 columns: odd, but ordinary
    nt.check_output_shape("8M3-P2-D10", (28, 28, 1))
