"""Layer notation parsing (pure Python, no TensorFlow)."""

import pytest

from tfcnn.core.errors import ModelSpecError
from tfcnn.spec import notation as nt


def test_tutorial_notation_parses_to_its_layers():
    assert nt.parse_notation(nt.NETWORKS["tutorial"]) == [
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
    assert nt.resolve_model("tutorial") == ("tutorial", nt.NETWORKS["tutorial"])
    assert nt.resolve_model("Tutorial")[0] == "tutorial"
    assert nt.resolve_model("8c3-d10") == ("8C3-D10", "8C3-D10")


def test_resolve_model_rejects_unknown_preset_with_the_known_names():
    with pytest.raises(ModelSpecError, match="unknown network name.*tutorial"):
        nt.resolve_model("resnet")


def test_output_units_is_the_last_dense():
    assert nt.output_units("32C3-D128-D7") == 7


def test_check_output_shape_rejects_a_net_that_shrinks_below_one_pixel():
    nt.check_output_shape(nt.NETWORKS["tutorial"], (28, 28, 1))  # ends at 1x1: fine
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


def test_photo_tokens_parse_to_their_layers():
    assert nt.parse_notation("32c3p-64C3S2P-R64-r128s2-64SC3-32sc5s2p-GAP-DO20-D10") == [
        nt.Conv(32, 3, same=True), nt.Conv(64, 3, 2, same=True), nt.Residual(64),
        nt.Residual(128, 2), nt.Conv(64, 3, separable=True),
        nt.Conv(32, 5, 2, same=True, separable=True), nt.GlobalPool(), nt.Dropout(0.2),
        nt.Dense(10)]


@pytest.mark.parametrize(("text", "token_no", "token", "why"), [
    ("R0-GAP-D10", 1, "R0", "filters and stride"),
    ("R8S0-GAP-D10", 1, "R8S0", "filters and stride"),
    ("8M3P-D10", 1, "8M3P", "same padding"),
    ("8C3-GAP-8C3-D10", 3, "8C3", "cannot follow GAP"),
    ("8C3-GAP-P2-D10", 3, "P2", "cannot follow GAP"),
    ("8C3-GAP-GAP-D10", 3, "GAP", "cannot follow GAP"),
    ("8C3-D10-R8-D10", 3, "R8", "cannot follow a dense"),
    ("R8-8M3-D10", 2, "8M3", "cannot follow an ordinary convolution"),
    ("8SC3-8M3-D10", 2, "8M3", "cannot follow an ordinary convolution"),
    ("8C3-GAP", 2, "GAP", "must be a dense layer"),
    ("8C3Q-D10", 1, "8C3Q", "is not a layer"),
])
def test_bad_photo_tokens_name_the_token(text, token_no, token, why):
    with pytest.raises(ModelSpecError) as err:
        nt.parse_notation(text)
    message = str(err.value)
    assert f"token {token_no} {token!r}" in message and why in message
    assert "\n" not in message


@pytest.mark.parametrize("size", [8, 33, 64, 200])
def test_a_gap_network_fits_any_image_size_that_reaches_it(size):
    nt.check_output_shape("16C3p-R32S2-R64S2-GAP-D10", (size, size + 5, 3))


def test_check_output_shape_follows_same_padding_and_residual_strides():
    # same padding keeps 5 -> 5, strides round up: 5 -> 3 -> 2 -> 1; a valid 3x3 then fails
    nt.check_output_shape("8C3p-R8S2-R8S2-8C3S2P-D10", (5, 5, 1))
    with pytest.raises(ModelSpecError, match="token 5 '8C3'.*below 1x1"):
        nt.check_output_shape("8C3p-R8S2-R8S2-8C3S2P-8C3-D10", (5, 5, 1))


def test_gap_ends_the_mirror_part_so_uneven_sizes_before_it_are_still_named():
    nt.check_output_shape("8M3-GAP-D10", (27, 27, 3))
    with pytest.raises(ModelSpecError, match="'P2' leaves 1 of 25 columns"):
        nt.check_output_shape("8M3-P2-GAP-D10", (27, 27, 3))


def test_keras_backbones_resolve_to_keras_spelling_and_unknown_ones_are_named():
    assert nt.resolve_model("keras:mobilenetv3small") == (
        "keras:MobileNetV3Small", "keras:MobileNetV3Small")
    with pytest.raises(ModelSpecError) as err:
        nt.resolve_model("keras:ResNet9000")
    assert "'keras:ResNet9000': unknown keras.applications backbone" in str(err.value)
    assert "MobileNetV3Small" in str(err.value) and "\n" not in str(err.value)


def test_keras_backbones_need_images_of_at_least_32_pixels_a_side():
    nt.check_output_shape("keras:MobileNetV3Small", (32, 40, 1))
    with pytest.raises(ModelSpecError, match=r"at least 32x32 \(got 28x28; try --image-size 32"):
        nt.check_output_shape("keras:ResNet50", (28, 28, 1))
