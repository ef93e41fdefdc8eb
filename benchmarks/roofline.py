"""The matmul (and convolution) roofline of a training step: time exactly the products one step needs.

Forward hooks record every ``nn.Linear`` call of one real step (rows, in, out, whether its input
needs a gradient). Each call costs a forward ``addmm``, a weight-gradient ``mm`` and, when the
input needs one, an input-gradient ``mm``. Timing those products alone, with the same shapes and
layouts, gives the fastest a step could be on this machine if everything else were free.
Convolutions are recorded the same way (Conv2d, ConvTranspose2d) and timed as their forward call
and its autograd gradients (weight, and input where it needs one), alone, with the same shapes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn


def median_seconds(once, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``once()`` over ``repeats`` runs after ``warmup`` (the device synchronized)."""
    for _ in range(warmup):
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


def record_calls(model: nn.Module, kinds: tuple[type, ...], describe, step) -> list:
    """Run ``step()`` once and list ``describe(module, input, output)`` for every call of a ``kinds`` module."""
    calls: list = []
    handles = [m.register_forward_hook(lambda module, args, out: calls.append(describe(module, args[0], out)))
               for m in model.modules() if isinstance(m, kinds)]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return calls


def record_linear_calls(model: nn.Module, step) -> list[LinearCall]:
    """Run ``step()`` once and list the Linear calls it made."""
    return record_calls(model, (nn.Linear,), lambda module, x, _out: LinearCall(
        x.numel() // x.shape[-1], module.in_features, module.out_features, x.requires_grad), step)


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

    return median_seconds(once, device, repeats, warmup=5)


# ---- convolutions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvCall:
    """One Conv2d or ConvTranspose2d call of a step: its input and weight shapes and geometry."""

    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    transposed: bool
    input_grad: bool
    output_numel: int

    @property
    def flops(self) -> int:
        """2 x multiply-adds of the forward, times 2 or 3 with the weight's (and input's) gradient."""
        if self.transposed:  # each input element meets every (out channel, kernel) weight
            macs = math.prod(self.input_shape) * math.prod(self.weight_shape[1:])
        else:  # each output element is a dot product over (in channels x kernel)
            macs = self.output_numel * math.prod(self.weight_shape[1:])
        return 2 * macs * (3 if self.input_grad else 2)


def record_conv_calls(model: nn.Module, step) -> list[ConvCall]:
    """Run ``step()`` once and list the convolution calls it made."""
    return record_calls(model, (nn.Conv2d, nn.ConvTranspose2d), lambda module, x, out: ConvCall(
        tuple(x.shape), tuple(module.weight.shape), module.stride, module.padding,
        getattr(module, "output_padding", (0, 0)), isinstance(module, nn.ConvTranspose2d), x.requires_grad,
        out.numel()), step)


def time_convs(calls: list[ConvCall], device: torch.device, repeats: int = 20) -> float:
    """Median seconds to run every call's forward convolution and its gradients once (fp32), alone."""
    g = torch.Generator(device="cpu").manual_seed(0)
    work = []
    for c in calls:
        x = torch.randn(c.input_shape, generator=g).to(device).requires_grad_(c.input_grad)
        w = torch.randn(c.weight_shape, generator=g).to(device).requires_grad_(True)
        work.append((c, x, w))

    def once():
        for c, x, w in work:
            if c.transposed:
                y = nn.functional.conv_transpose2d(x, w, None, c.stride, c.padding, c.output_padding)
            else:
                y = nn.functional.conv2d(x, w, None, c.stride, c.padding)
            torch.autograd.grad(y, [x, w] if c.input_grad else [w], torch.ones_like(y))

    return median_seconds(once, device, repeats, warmup=3)
