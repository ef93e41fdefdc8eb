"""The base configs of the three plugin parts; a plugin's own Config subclasses one of them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModalityConfig(BaseModel):
    """Settings shared by every modality; a plugin's Config subclasses this."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Registered modality kind, e.g. 'image' or 'label'.")
    weight: float = Field(1.0, gt=0, description="λ: weight of this modality's log-likelihood in the ELBO.")


class FusionConfig(BaseModel):
    """Settings shared by every fusion; a plugin's Config subclasses this."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field("poe", description="Registered fusion kind, e.g. 'poe'.")


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
    pairing_seed: int = Field(
        0, ge=0, lt=2**63, description="Seed of that draw; the masks are saved in the run directory."
    )
    on_device: bool | Literal["auto"] = Field(
        "auto", description="true: keep the training split on the training device and slice batches from it "
        "(fastest); false: stream batches through a DataLoader with workers; auto: on the device when the split "
        "takes at most a quarter of the device's memory (training says which it chose).",
    )
    workers: int = Field(2, ge=0, le=64, description="DataLoader worker processes when streaming (0: read in-process).")
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
