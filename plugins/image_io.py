"""Images given by a user: a PNG file or a tensor, checked against the modality's shape, to uint8 ``(N, C, H, W)``.

Shared by the MLP ``image`` and the convolutional ``conv_image`` modalities, with their ``prepare``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen import GivenError


def prepare_image(raw: Tensor, binarize: bool, generator: torch.Generator | None = None) -> Tensor:
    """Stored uint8 pixels -> floats in [0, 1]; with ``binarize``, a Bernoulli draw of them (dynamic binarization)."""
    x = raw.float().div_(255.0) if raw.dtype == torch.uint8 else raw.float()
    return torch.bernoulli(x, generator=generator) if binarize else x


def parse_image(value: Any, shape: tuple[int, int, int], name: str) -> Tensor:
    """A PNG path -> ``(1, C, H, W)``; a tensor of one image ``(C, H, W)`` or a batch ``(N, C, H, W)``
    (for grey images also ``(H, W)`` and ``(N, H, W)``), uint8 or floats in [0, 1] -> uint8 ``(N, C, H, W)``."""
    if not isinstance(value, Tensor):
        return read_png(Path(str(value)), shape, name)
    x = value.detach().cpu()
    C, H, W = shape
    shapes = [(C, H, W)] + ([(H, W)] if C == 1 else [])
    if tuple(x.shape) in shapes:
        x = x.reshape(1, C, H, W)
    elif x.dim() >= 1 and x.shape[0] > 0 and tuple(x.shape[1:]) in shapes:
        x = x.reshape(x.shape[0], C, H, W)
    else:
        one = " or ".join(str(s) for s in shapes)
        raise GivenError(f"{name}: expected a tensor of shape {one} or a batch (N, {C}, {H}, {W}), "
                         f"got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point() or not bool(((x >= 0) & (x <= 1)).all()):
        raise GivenError(f"{name}: expected uint8 pixels or floats in [0, 1], got {x.dtype} values "
                         f"from {float(x.min()):g} to {float(x.max()):g}")
    return (x.float() * 255).round().to(torch.uint8)


def read_png(path: Path, shape: tuple[int, int, int], name: str = "image") -> Tensor:
    """A PNG of exactly ``shape`` -> uint8 ``(1, C, H, W)``; colour images are converted to grey.

    The size is checked from the header before any pixel is decoded, so a decompression bomb (a
    small file of a huge image) is refused without being unpacked.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise GivenError(f"{name}={path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.size != (shape[2], shape[1]):
                    raise GivenError(
                        f"{name}={path}: expected a {shape[2]}x{shape[1]} image, got {img.size[0]}x{img.size[1]}"
                    )
                img = img.convert("L" if shape[0] == 1 else "RGB")
                data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            ValueError) as exc:
        raise GivenError(f"{name}={path}: not a readable image ({exc.__class__.__name__})")
    return data.reshape(shape[1], shape[2], shape[0]).permute(2, 0, 1).unsqueeze(0).contiguous()
