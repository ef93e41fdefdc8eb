"""``[model]``: which model family a recipe trains, and the settings every family shares.

A family's own settings live in its ``Config``, a subclass of :class:`ModelConfig` that sits beside
the family (the MVAE's: ``mmgen_plugins.families.mvae.config``). A recipe without ``kind`` means the
MVAE, so every recipe and run directory written before families were plugins reads unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FAMILY = "mvae"


class ModelConfig(BaseModel):
    """Settings shared by every model family; a family's Config subclasses this."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(DEFAULT_FAMILY, description="Registered model family, e.g. 'mvae' (the default).")
    latent_dim: int = Field(64, gt=0, description="Size D of the shared latent z.")
