"""The feature networks FID is measured in: mmgen's own judge, or Inception-v3 from a weights file on disk.

A :class:`FeatureNet` maps images ``(N, C, H, W)`` in [0, 1] to features ``(N, F)`` and says in words
what it is (``name``), since an FID means nothing without its features: the field's numbers use
Inception-v3's 2048 pool features (torch-fidelity's port of TensorFlow's 2015 graph); a judge's are
cheaper, work on any image size, but compare only with numbers in the same judge's features.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from mmgen.errors import MmgenError
from mmgen.eval.judge import ImageClassifier

# torch-fidelity's Inception-v3 weights (converted from TensorFlow's FID graph); a test checks that
# torch-fidelity still names this file, so it can be named even when torch-fidelity is not installed.
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[-1]
INCEPTION_SIZE = 299  # torch-fidelity resizes every image to 299 x 299
INSTALL = "pip install 'mmgen[inception]'"


class FeatureNet(Protocol):
    """Images ``(N, C, H, W)`` float in [0, 1] -> features ``(N, num_features)``."""

    name: str  # what the features are, for the report: e.g. "penultimate layer (128 features) of ..."
    num_features: int

    def __call__(self, images: Tensor) -> Tensor: ...


class JudgeFeatures(nn.Module):
    """The penultimate layer of an :class:`ImageClassifier`: every layer of its ``net`` but the last.

    It shares the judge's parameters (no copy). ``num_features`` is what torchmetrics reads of a
    custom network instead of probing it with a 3 x 299 x 299 dummy that a 28 x 28 judge cannot take.
    """

    def __init__(self, judge: ImageClassifier, description: str):
        super().__init__()
        self.layers = judge.net[:-1]  # conv blocks, flatten, Linear, ReLU: (N, C, H, W) -> (N, F)
        self.num_features = judge.net[-1].in_features
        self.name = f"penultimate layer ({self.num_features} features) of {description}"

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images.float())  # (N, F), non-negative (after a ReLU)


def judge_features(judge: ImageClassifier, description: str) -> JudgeFeatures:
    """FID features from mmgen's judge; ``description`` says which, e.g. "mmgen's m0 judge, a CNN trained on
    polymnist_style's training split" (the name becomes "penultimate layer (128 features) of <description>")."""
    return JudgeFeatures(judge, description)


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3, 2048 pool features, fed as torch-fidelity feeds it.

    Images in [0, 1] are rounded to uint8 (rounded, not truncated, so stored uint8 images come back
    exactly), grey ``(N, 1, H, W)`` is repeated to 3 channels, and torch-fidelity resizes to 299 x 299
    by bilinear interpolation as TensorFlow 1.x did, like the original FID code (torchmetrics' own
    Inception path antialiases by default, which changes the numbers).
    """

    num_features = 2048

    def __init__(self, extractor: nn.Module, weights: Path, unpublished: str | None = None):
        super().__init__()
        self.extractor = extractor
        source = f"torch-fidelity's {weights.name}" if unpublished is None else f"{weights.name} ({unpublished})"
        self.name = (f"Inception-v3 pool features ({self.num_features}) of {source}, "
                     f"images resized to {INCEPTION_SIZE}x{INCEPTION_SIZE} (bilinear, as TensorFlow 1.x), "
                     "grey repeated to 3 channels")

    def forward(self, images: Tensor) -> Tensor:
        (pool,) = self.extractor(rgb_pixels(images))  # (N, 2048), float32
        return pool


def rgb_pixels(images: Tensor) -> Tensor:
    """Images ``(N, 1 or 3, H, W)`` in [0, 1] -> uint8 ``(N, 3, H, W)``, grey repeated, each value rounded to
    the nearest of 0..255 (truncating, as torchmetrics does, would darken a generated 0.999 to 254)."""
    if images.shape[1] not in (1, 3):
        raise MmgenError(f"Inception-v3 reads grey or RGB images; these have {images.shape[1]} channels")
    return (images.expand(-1, 3, -1, -1).clamp(0, 1) * 255).round().to(torch.uint8)


def default_inception_path() -> Path:
    """Where torch-fidelity's first use would have cached the weights: torch.hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def check_inception(weights: Path | None = None) -> Path:
    """The weights file Inception-v3 features would read (``weights``, else torch.hub's cache); one-line
    :class:`MmgenError` naming the file expected and how to get it when it or torch-fidelity is missing."""
    path = Path(weights).expanduser() if weights is not None else default_inception_path()
    fetch = f"copy {INCEPTION_WEIGHTS_URL} there (fetched on a machine with a network), or pass another path"
    if importlib.util.find_spec("torch_fidelity") is None:
        raise MmgenError(f"Inception-v3 features need torch-fidelity: {INSTALL}, and its weights at {path} ({fetch})")
    if not path.is_file():
        raise MmgenError(f"Inception-v3 weights not found: expected {path} ({fetch}); torch-fidelity: {INSTALL}")
    return path


def published(path: Path) -> str | None:
    """None when the file is torch-fidelity's published weights (its SHA-256 begins with the 8 hex digits in
    the published file name, torch.hub's convention), else what the file is instead."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = INCEPTION_FILE.rsplit("-", 1)[-1].split(".")[0]
    return None if digest.startswith(expected) else f"weights of SHA-256 {digest[:12]}..., not the published {expected}"


def inception_features(weights: Path | None = None, device: torch.device | str = "cpu") -> InceptionFeatures:
    """Inception-v3 (torch-fidelity's FID network) from ``weights``, else from torch.hub's cache; never downloaded.

    Raises one-line :class:`MmgenError` when torch-fidelity is missing or the file is not there (``check_inception``).
    The file is first read with ``weights_only=True`` so that a file carrying pickled code is refused before
    torch-fidelity reads it (it reads with pickling on). Weights other than the published file are used, and
    the features' name says so.
    """
    path = check_inception(weights)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        torch.load(path, map_location="cpu", weights_only=True)
        # An explicit path: torch-fidelity downloads only when it is given none.
        extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                feature_extractor_weights_path=str(path))
    except Exception as exc:  # pickled code, a truncated download, another network's weights
        raise MmgenError(f"{path} is not torch-fidelity's Inception-v3 state dict: {_first_line(exc)}")
    return InceptionFeatures(extractor, path, published(path)).to(device).eval()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
