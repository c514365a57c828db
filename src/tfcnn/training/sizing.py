"""The network's head sized from the data: one logit per class of the dataset.

A named network (`tutorial`) or a preset's network ends in `D10` as written; trained on a
folder of 3 classes it gets `D3` instead (fastai and Ludwig size the head the same way). A
notation the user wrote is taken as written: its last `D<n>` must match the class count,
and the check runs before any image is decoded, since the class count is read from the
folder names (`data.source.class_names_of`). `keras:NAME` backbones always get a new head
of one logit per class (models/backbones.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfcnn.core.config import TrainConfig
from tfcnn.core.errors import ModelSpecError
from tfcnn.core.presets import preset_network
from tfcnn.spec import notation
from tfcnn.spec.backbones import is_backbone_spec


@dataclass(frozen=True)
class Head:
    """The notation to build and, when its head was resized, from how many outputs."""

    notation: str
    sized_from: int | None = None  # the written network's outputs; None: not resized

    def describe(self) -> str:
        """"" when nothing was sized, else e.g. "head sized to 3 classes (D10 -> D3)"."""
        if self.sized_from is None:
            return ""
        units = notation.output_units(self.notation)
        return f"head sized to {units} classes (D{self.sized_from} -> D{units})"


def is_named_network(config: TrainConfig, model_name: str) -> bool:
    """Whether the network comes by name (`tutorial`) or from the preset, not as notation
    the user wrote: those get their head sized to the data."""
    if model_name.lower() in notation.NETWORKS:
        return True
    return (config.preset is not None
            and preset_network(config.preset, config.dataset) == config.model)


def fit_head(config: TrainConfig, model_name: str, notation_str: str, dataset: str,
             classes: int) -> Head:
    """The network to build for `classes` classes (see the module doc); a written notation
    whose last layer disagrees is a `ModelSpecError` naming both counts."""
    if is_backbone_spec(notation_str):
        return Head(notation_str)
    units = notation.output_units(notation_str)
    if units == classes:
        return Head(notation_str)
    if is_named_network(config, model_name):
        return Head(notation.with_output_units(notation_str, classes), units)
    raise ModelSpecError(f"model {notation_str!r}: the last layer gives {units} outputs, "
                         f"but dataset {dataset!r} has {classes} classes "
                         f"(end the notation with D{classes}, or use a named network: "
                         "its head is sized to the data)")
