"""``[train]``: the optimization schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CUDA_DEVICES = 128  # torch keeps a device index in 8 bits: cuda:128 would name cuda:-128


def cuda_index_problem(device: str) -> str | None:
    """What is wrong with the N of ``cuda:N`` (torch takes 0 to 127 in plain digits, no leading zero); None if
    nothing is, or ``device`` is no ``cuda:N``."""
    kind, sep, index = device.partition(":")
    if kind != "cuda" or not sep:
        return None
    plain = index.isascii() and index.isdigit() and (index == "0" or not index.startswith("0"))
    if not plain or int(index) >= CUDA_DEVICES:
        return f"a CUDA device index is a number from 0 to {CUDA_DEVICES - 1}, without leading zeros"
    return None


class TrainConfig(BaseModel):
    """Optimization schedule (the MVAE paper: Adam 1e-3, batch 100, 500 epochs, β over 200)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(500, ge=1, description="Epochs to train in total (a resumed run continues up to this).")
    batch_size: int = Field(
        100, ge=1, description="Examples per optimizer step: the global batch (under torchrun each of N processes "
        "takes 1/N of it, so N changes the speed, not the training).",
    )
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    anneal_epochs: float = Field(
        200, ge=0, description="β rises linearly over these epochs, every step: step s of N trains at β = s/N, so "
        "from 1/N (near 0) to 1; 0 means β = 1 throughout.",
    )
    best_by: Literal["loss", "elbo"] = Field(
        "loss", description="Which validation number picks best.safetensors: loss (the training objective at "
        "β = 1, with the recipe's λ) or elbo (the ELBO of all modalities together, λ = 1: the proxy for log p(x))."
    )
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
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto, cpu, cuda[:N] (N: 0 to 127) or mps (--device wins).",
    )
    rendezvous_timeout: float = Field(
        600.0, gt=0, le=86400, description="Under torchrun, seconds each process waits, once its data is loaded, "
        "for all the others to join before it stops with one line (600: torchrun's own join timeout).",
    )
    schedule: Literal["constant", "cosine", "step"] = Field(
        "constant", description="Learning-rate schedule after the warm-up, stepped every optimizer step: constant; "
        "cosine (from lr to min_lr over the remaining epochs); step (times gamma every step_epochs).",
    )
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up of the learning rate from lr/1000 to lr.")
    min_lr: float = Field(0.0, ge=0, description="The cosine schedule's final learning rate.")
    step_epochs: float = Field(100.0, gt=0, description="The step schedule's period, in epochs.")
    gamma: float = Field(0.5, gt=0, le=1, description="The step schedule's factor.")
    clip_grad_norm: float = Field(
        0.0, ge=0, description="Clip the gradient's global L2 norm to this before each step (0: no clipping)."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast the encoders and decoders to bf16 or fp16 (the fusion, likelihoods, KL and "
        "loss stay in fp32; fp16 adds a gradient scaler). Changes numerics: off by default.",
    )
    compile: bool = Field(False, description="torch.compile the model's training step (changes numerics slightly).")
    compile_backend: str = Field(
        "inductor", min_length=1, description="torch.compile backend (inductor; aot_eager compiles fast, for tests)."
    )
    loggers: list[str] = Field(
        ["jsonl"], description="Where epoch and step metrics go: registered logger kinds (jsonl: metrics.jsonl; "
        "tensorboard: event files under tensorboard/; mlflow, wandb: experiment trackers, which also get mmgen "
        "eval's numbers; each but jsonl needs its package).",
    )

    @field_validator("device")
    @classmethod
    def _an_index_torch_takes(cls, device: str) -> str:
        problem = cuda_index_problem(device)
        if problem:
            raise ValueError(problem)
        return device
