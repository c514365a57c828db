"""The layer notation the tutorial names its network with, and the named networks
(`NETWORKS`; training recipes are `tfcnn.core.presets.PRESETS`).

`32C3-P2-32C3-P2-32C5S2-BN-DO40-D128-D10` reads left to right:
  nCk[Ss][p]  convolution, n filters of k x k, ReLU, valid padding (`p`: same), optional stride
  nSCk[Ss][p]  separable convolution: a k x k depthwise filter per channel, then n 1 x 1 ones
  Rn[Ss]   residual block: two 3 x 3 same-padded convolutions with batch norm, plus the input
           (through a 1 x 1 convolution when the channels or stride change), then ReLU
  nMk[Sk]  mirror convolution: n/2 filters, each also applied mirrored left to right (n even);
           a network whose convolutions start with these is invariant to mirroring the
           image (models/mirror.py); they cannot follow an ordinary convolution
  Pk       max-pooling k x k (stride k)
  GAP      global average pooling: each channel's mean, so the network takes any image size
  BN       batch normalisation
  DOpp     dropout of pp percent
  Dn       dense layer of n units: ReLU, except the last, which gives the logits

Parsing is pure Python (no TensorFlow), so the CLI can reject a bad `--model` at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tfcnn.core.errors import ModelSpecError
from tfcnn.spec.backbones import (
    BACKBONE_MIN_SIZE,
    KERAS_PREFIX,
    backbone_spec,
    is_backbone_spec,
)

# The tutorial's network, with its bug fixed: the last layer gives logits, not softmax.
NETWORKS: dict[str, str] = {
    "tutorial": "32C3-P2-32C3-P2-32C5S2-BN-DO40-D128-D10",
}


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: int
    stride: int = 1
    mirror: bool = False
    same: bool = False       # same padding (output size: input size / stride, rounded up)
    separable: bool = False  # depthwise k x k, then pointwise 1 x 1


@dataclass(frozen=True)
class Residual:
    filters: int
    stride: int = 1


@dataclass(frozen=True)
class GlobalPool:
    pass


@dataclass(frozen=True)
class Pool:
    size: int


@dataclass(frozen=True)
class BatchNorm:
    pass


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class Dense:
    units: int


LayerSpec = Conv | Residual | Pool | GlobalPool | BatchNorm | Dropout | Dense

_TOKEN_FORMS = "nCk, nCkSs, nCkp, nSCk, nMk, Rn, RnSs, Pk, GAP, BN, DOpp or Dn"
_CONV = re.compile(r"(\d+)(SC|C|M)(\d+)(?:S(\d+))?(P)?")
_RESIDUAL = re.compile(r"R(\d+)(?:S(\d+))?")
_POOL = re.compile(r"P(\d+)")
_DROPOUT = re.compile(r"DO(\d+)")
_DENSE = re.compile(r"D(\d+)")


def _token_error(notation: str, index: int, token: str, why: str) -> ModelSpecError:
    return ModelSpecError(f"model {notation!r}: token {index + 1} {token!r} {why}")


def _conv(notation: str, index: int, token: str, m: re.Match[str]) -> Conv:
    filters, kernel = int(m[1]), int(m[3])
    stride = int(m[4]) if m[4] else 1
    if min(filters, kernel, stride) < 1:
        raise _token_error(notation, index, token, "needs filters, kernel and stride >= 1")
    if m[2] == "M" and filters % 2:
        raise _token_error(notation, index, token,
                           "needs an even number of filters (they come in mirror pairs)")
    if m[2] == "M" and m[5]:
        raise _token_error(notation, index, token,
                           "cannot have same padding (mirror convolutions are valid-padded)")
    return Conv(filters, kernel, stride, mirror=m[2] == "M", same=bool(m[5]),
                separable=m[2] == "SC")


def _parse_token(notation: str, index: int, token: str) -> LayerSpec:
    upper = token.upper()
    if upper == "BN":
        return BatchNorm()
    if upper == "GAP":
        return GlobalPool()
    if m := _CONV.fullmatch(upper):
        return _conv(notation, index, token, m)
    if m := _RESIDUAL.fullmatch(upper):
        filters, stride = int(m[1]), int(m[2]) if m[2] else 1
        if min(filters, stride) < 1:
            raise _token_error(notation, index, token, "needs filters and stride >= 1")
        return Residual(filters, stride)
    if m := _POOL.fullmatch(upper):
        if int(m[1]) < 1:
            raise _token_error(notation, index, token, "needs a pool size >= 1")
        return Pool(int(m[1]))
    if m := _DROPOUT.fullmatch(upper):
        if not 0 <= int(m[1]) < 100:
            raise _token_error(notation, index, token, "needs a dropout percentage from 0 to 99")
        return Dropout(int(m[1]) / 100)
    if m := _DENSE.fullmatch(upper):
        if int(m[1]) < 1:
            raise _token_error(notation, index, token, "needs at least 1 unit")
        return Dense(int(m[1]))
    raise _token_error(notation, index, token, f"is not a layer (expected {_TOKEN_FORMS})")


def parse_notation(notation: str) -> list[LayerSpec]:
    """Parse a notation string into layer specs; raise ModelSpecError at the first bad token."""
    tokens = notation.strip().split("-")
    if not notation.strip():
        raise ModelSpecError("model notation is empty (expected e.g. '32C3-P2-D128-D10')")
    layers: list[LayerSpec] = []
    seen_dense = seen_plain_conv = seen_gap = False
    for index, token in enumerate(tokens):
        if not token:
            raise _token_error(notation, index, token, "is empty (two '-' in a row?)")
        spec = _parse_token(notation, index, token)
        spatial = isinstance(spec, Conv | Residual | Pool | GlobalPool)
        if spatial and seen_dense:
            raise _token_error(notation, index, token, "cannot follow a dense layer")
        if spatial and seen_gap:
            raise _token_error(notation, index, token,
                               "cannot follow GAP (it pools the image to one value per channel)")
        if isinstance(spec, Conv) and spec.mirror and seen_plain_conv:
            raise _token_error(notation, index, token,
                               "cannot follow an ordinary convolution (mirror ones come first)")
        seen_dense = seen_dense or isinstance(spec, Dense)
        seen_gap = seen_gap or isinstance(spec, GlobalPool)
        seen_plain_conv = seen_plain_conv or isinstance(spec, Residual) or (
            isinstance(spec, Conv) and not spec.mirror)
        layers.append(spec)
    if not isinstance(layers[-1], Dense):
        raise _token_error(notation, len(tokens) - 1, tokens[-1],
                           "must be a dense layer Dn (the last layer gives the class logits)")
    return layers


def resolve_model(name_or_notation: str) -> tuple[str, str]:
    """Return (display name, notation) for a network name or a notation string.

    `keras:NAME` (a keras.applications backbone, spec/backbones.py) comes back as
    ("keras:NAME", "keras:NAME") with NAME spelt as Keras does.
    """
    key = name_or_notation.strip()
    if key.lower().startswith(KERAS_PREFIX):
        spec = backbone_spec(key)
        return spec, spec
    if key.lower() in NETWORKS:
        return key.lower(), NETWORKS[key.lower()]
    if "-" not in key and not any(ch.isdigit() for ch in key):
        names = ", ".join(sorted(NETWORKS))
        raise ModelSpecError(f"--model {key!r}: unknown network name (known: {names}) "
                             "and not a layer notation like '32C3-P2-D128-D10'")
    parse_notation(key)
    return key.upper(), key.upper()


def output_units(notation: str) -> int:
    """Number of logits the notation's last layer gives."""
    last = parse_notation(notation)[-1]
    assert isinstance(last, Dense)  # parse_notation guarantees it
    return last.units


def with_output_units(notation: str, units: int) -> str:
    """`notation` with its last layer giving `units` logits.

    >>> with_output_units("32C3-P2-D128-D10", 3)
    '32C3-P2-D128-D3'
    """
    parse_notation(notation)  # the last token is a dense layer Dn
    head, _, _ = notation.strip().rpartition("-")
    return f"{head}-D{units}" if head else f"D{units}"


def _uneven_columns(spec: LayerSpec, width: int) -> int:
    """Columns a conv's stride or a pool leaves over at the right edge (0: none)."""
    if isinstance(spec, Conv):
        if spec.same:
            return 0
        return (width - spec.kernel) % spec.stride
    if isinstance(spec, Pool):
        return width % spec.size
    return 0


def _spatial_size(spec: LayerSpec, size: int) -> int:
    """Rows (or columns) a layer gives for `size` rows (columns) in."""
    if isinstance(spec, Residual) or isinstance(spec, Conv) and spec.same:
        return -(-size // spec.stride)
    if isinstance(spec, Conv):
        return (size - spec.kernel) // spec.stride + 1
    if isinstance(spec, Pool):
        return size // spec.size
    return size


def check_output_shape(notation: str, input_shape: tuple[int, int, int]) -> None:
    """Raise ModelSpecError if a conv or pool would shrink the image below 1 x 1, or if one in
    the mirror part of a network would leave columns over at one edge (its output would then
    no longer mirror with its input). For `keras:NAME`: if the image is under 32 x 32."""
    height, width = input_shape[:2]
    if is_backbone_spec(notation):
        if min(height, width) < BACKBONE_MIN_SIZE:
            raise ModelSpecError(f"--model {notation}: needs images of at least "
                                 f"{BACKBONE_MIN_SIZE}x{BACKBONE_MIN_SIZE} (got {height}x{width};"
                                 f" try --image-size {BACKBONE_MIN_SIZE})")
        return
    in_mirror_part = False
    tokens = notation.strip().split("-")
    for index, spec in enumerate(parse_notation(notation)):
        token = tokens[index]
        if isinstance(spec, GlobalPool):
            return  # one value per channel from here on, whatever the image size
        if isinstance(spec, Conv):
            in_mirror_part = spec.mirror
        elif isinstance(spec, Dense | Residual):
            in_mirror_part = False
        if in_mirror_part and (left := _uneven_columns(spec, width)):
            raise _token_error(notation, index, token,
                               f"leaves {left} of {width} columns over at one edge (in the "
                               "mirror part of a network, sizes must divide evenly)")
        height, width = _spatial_size(spec, height), _spatial_size(spec, width)
        if height < 1 or width < 1:
            raise _token_error(notation, index, token,
                               f"shrinks the {input_shape[0]}x{input_shape[1]} input below 1x1")
