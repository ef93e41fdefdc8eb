"""The matmul roofline of a training step: time exactly the matrix products one step needs.

Forward hooks record every ``nn.Linear`` call of one real step (rows, in, out, whether its input
needs a gradient). Each call costs a forward ``addmm``, a weight-gradient ``mm`` and, when the
input needs one, an input-gradient ``mm``. Timing those products alone, with the same shapes and
layouts, gives the fastest a step could be on this machine if everything else were free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LinearCall:
    rows: int
    fan_in: int
    fan_out: int
    input_grad: bool

    @property
    def flops(self) -> int:
        products = 3 if self.input_grad else 2  # forward, grad-weight, (grad-input)
        return 2 * self.rows * self.fan_in * self.fan_out * products


def record_linear_calls(model: nn.Module, step) -> list[LinearCall]:
    """Run ``step()`` once and list the Linear calls it made."""
    calls: list[LinearCall] = []

    def hook(module, args, _out):
        x = args[0]
        calls.append(LinearCall(x.numel() // x.shape[-1], module.in_features, module.out_features, x.requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return calls


def time_matmuls(calls: list[LinearCall], device: torch.device, repeats: int = 50) -> float:
    """Median seconds to run every product of ``calls`` once (fp32)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    work = []
    for c in calls:
        x = torch.randn(c.rows, c.fan_in, generator=g).to(device)
        w = torch.randn(c.fan_out, c.fan_in, generator=g).to(device)
        b = torch.randn(c.fan_out, generator=g).to(device)
        dy = torch.randn(c.rows, c.fan_out, generator=g).to(device)
        work.append((x, w, b, dy, c.input_grad))

    def once():
        for x, w, b, dy, input_grad in work:
            torch.addmm(b, x, w.t())  # forward
            torch.mm(dy.t(), x)  # grad of the weight
            if input_grad:
                torch.mm(dy, w)  # grad of the input

    for _ in range(5):
        once()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
