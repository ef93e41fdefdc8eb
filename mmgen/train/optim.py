"""The optimizer, the learning-rate schedule (torch.optim.lr_scheduler) and gradient clipping.

Schedules are stepped after every optimizer step, so their lengths are counted in steps from the
recipe's epochs: a linear warm-up (``train.warmup_epochs``) from lr/1000 to lr, then ``constant``,
``cosine`` (to ``train.min_lr`` at the last step) or ``step`` (times ``gamma`` every
``step_epochs``). The schedule's state travels in the resume file's header as JSON.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

from mmgen.config import TrainConfig
from mmgen.errors import CheckpointError

WARMUP_START = 1e-3  # the warm-up starts at lr * this


def build_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam, with one fused kernel per step where torch supports it for this device (CPU and CUDA do)."""
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    return torch.optim.Adam(params, lr=cfg.lr, **fast)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LRScheduler | None:
    """The recipe's schedule, or None for a constant learning rate without warm-up (nothing to step)."""
    warmup = math.ceil(cfg.warmup_epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=cfg.min_lr)
    elif cfg.schedule == "step":
        main = StepLR(optimizer, step_size=max(1, round(cfg.step_epochs * steps_per_epoch)), gamma=cfg.gamma)
    elif warmup:
        main = LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=1)  # constant after the warm-up
    else:
        return None
    if not warmup:
        return main
    ramp = LinearLR(optimizer, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def clip_gradients(params, max_norm: float) -> None:
    """Scale the gradients so that their global L2 norm is at most ``max_norm`` (no host sync)."""
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=None)  # None: foreach where the device has it


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Stepper:
    """One optimizer step: the forward pass (autocast, compiled), backward (scaled for fp16), gradient
    clipping, the optimizer and the schedule. ``forward`` is the model, or its DDP wrapper."""

    def __init__(self, model: torch.nn.Module, forward, cfg: TrainConfig, device: torch.device,
                 steps_per_epoch: int):
        self.model, self.cfg, self.device = model, cfg, device
        self.optimizer = build_optimizer(model.parameters(), cfg, device)
        self.scheduler = build_scheduler(self.optimizer, cfg, steps_per_epoch)
        self.amp = AMP_DTYPES.get(cfg.precision)
        self.scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
        self.set_forward(forward)

    def set_forward(self, forward) -> None:
        """What each step calls: the model or its DDP wrapper, compiled when the recipe asks."""
        self.forward = torch.compile(forward, backend=self.cfg.compile_backend) if self.cfg.compile else forward

    def __call__(self, batch: dict, beta: float, present: dict | None, loss_scale: float = 1.0):
        """Forward, backward and step; returns the model's output (loss and detached terms)."""
        if self.amp is None:
            out = self.forward(batch, beta=beta, present=present)
        else:
            with torch.autocast(self.device.type, dtype=self.amp):
                out = self.forward(batch, beta=beta, present=present)
        self.optimizer.zero_grad(set_to_none=True)
        loss = out.loss * loss_scale if loss_scale != 1.0 else out.loss
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clipping sees the true gradients
            clip_gradients(self.model.parameters(), self.cfg.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            clip_gradients(self.model.parameters(), self.cfg.clip_grad_norm)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return out

    def state(self) -> dict:
        """What the resume file keeps of the schedule and the fp16 scaler (JSON)."""
        out = {}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out

    def load_state(self, meta: dict) -> None:
        """Restore what ``state`` kept; a resume file without it (another schedule, an older mmgen) is refused."""
        for key, part in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            if part is None:
                continue
            if key not in meta:
                raise CheckpointError(f"the resume file holds no {key} state, which train.schedule or "
                                      "train.precision needs: it was written with other settings")
            part.load_state_dict(meta[key])
