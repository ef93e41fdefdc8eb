"""``[train]``: the optimization schedule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """Optimization schedule (the MVAE paper: Adam 1e-3, batch 100, 500 epochs, β over 200)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(500, ge=1, description="Epochs to train in total (a resumed run continues up to this).")
    batch_size: int = Field(100, ge=1, description="Examples per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    anneal_epochs: float = Field(200, ge=0, description="β rises linearly from 0 to 1 over these epochs, every step.")
    eval_batch_size: int = Field(2000, ge=1, description="Examples per batch when validating.")
    log_every: int = Field(
        25, ge=1, description="Steps between progress updates and divergence checks; each one syncs the host once."
    )
    max_loss: float = Field(
        1e8, gt=0, description="A mean loss (nats per example) above this counts as divergence and stops training."
    )
    blowup: float = Field(
        1000.0, ge=0, description="After the first epoch, a mean loss more than this many times the previous epoch's "
        "(at least 1 nat) counts as divergence; 0 turns the rule off.",
    )
    crossmodal_every: int = Field(
        0, ge=0, description="Log accuracy and coherence on a fixed validation subset every N epochs (0: never)."
    )
    crossmodal_examples: int = Field(1000, ge=10, description="Size of that subset (coherence: a tenth per class).")
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda[:N] or mps (--device wins)."
    )
