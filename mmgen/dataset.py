"""The Dataset interface: a plugin returns whole splits as tensors, one per field.

Training keeps the splits on the device and slices batches out of them, so no per-example
Python work happens in the training loop.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

SPLITS = ("train", "val", "test")
Split = dict[str, Tensor]  # field name -> stored tensor (N, *event), e.g. uint8 images, int64 labels


class DatasetConfig(BaseModel):
    """Settings shared by every dataset; a plugin's Config subclasses this."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Registered dataset kind, e.g. 'mnist'.")
    root: str | None = Field(
        None, description="Data folder in torchvision's layout; defaults to $MMGEN_DATA_ROOT, then a cache folder."
    )
    download: bool = Field(True, description="Download through torchvision when the files are not under root.")
    paired_fraction: float = Field(
        1.0, gt=0, le=1,
        description="Fraction of training examples that keep every modality; each other example keeps one, "
        "drawn uniformly (weak supervision). 1: fully paired.",
    )
    pairing_seed: int = Field(0, description="Seed of that draw; the masks are saved in the run directory.")
    missing_at_eval: dict[str, float] = Field(
        default_factory=dict,
        description="Modality name -> fraction of validation and test examples that lack it (seeded by pairing_seed).",
    )

    @field_validator("missing_at_eval")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"fractions must lie in [0, 1], got {bad}")
        return value


class Dataset(ABC):
    """A data set of several aligned fields (for example ``image`` and ``label``).

    ``fields`` maps each field name to the modality kind it is meant for; recipe modalities are
    matched to fields by name before any data is read.
    """

    Config: ClassVar[type[DatasetConfig]] = DatasetConfig
    fields: ClassVar[dict[str, str]] = {}
    # The field holding each example's class (int64), the ground truth of cross-modal accuracy; None if none.
    class_field: ClassVar[str | None] = None

    def __init__(self, config: DatasetConfig):
        self.config = config

    @property
    def root(self) -> Path:
        """recipe ``data.root``, else ``$MMGEN_DATA_ROOT``, else ``~/.cache/mmgen/data``."""
        root = self.config.root or os.environ.get("MMGEN_DATA_ROOT")
        return Path(root).expanduser() if root else Path.home() / ".cache" / "mmgen" / "data"

    @abstractmethod
    def load(self) -> dict[str, Split]:
        """Return ``{"train": ..., "val": ..., "test": ...}``, each ``{field: tensor (N, *event)}`` on the CPU."""
