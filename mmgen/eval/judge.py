"""A small CNN that judges generated images: does a sample drawn for class k look like class k?

Trained on a data set's training split on first use and cached as safetensors, keyed by the
data it was trained on. It is generic: any image field ``(N, C, H, W)`` against any label field.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from mmgen.storage.tensors import load_tensors, save_tensors

# Part of the cache key with the data and the epochs: bump it whenever ImageClassifier or
# train_classifier changes, so that no classifier trained another way is reused.
CLASSIFIER_VERSION = 1

Batches = Callable[[int, int], None]  # (batches done, batches in all), after each step of a training
# Who hears of a judge's training (``mmgen eval``'s progress): it runs deep inside the cross-modal set-up.
_ON_TRAINING: contextvars.ContextVar[Batches | None] = contextvars.ContextVar("judge_training", default=None)


@contextlib.contextmanager
def training_progress(on_batch: Batches | None) -> Iterator[None]:
    """Within this context a judge that has to be trained (not one read from the cache) reports each
    of its optimizer steps to ``on_batch(done, total)``."""
    token = _ON_TRAINING.set(on_batch)
    try:
        yield
    finally:
        _ON_TRAINING.reset(token)


class ImageClassifier(nn.Module):
    """Two conv blocks and an MLP: ``(N, C, H, W)`` in [0, 1] -> logits ``(N, K)``."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 2000) -> Tensor:
        """Class indices ``(N,)`` for images in [0, 1]."""
        self.eval()
        return torch.cat([self(x[i : i + batch_size]).argmax(-1) for i in range(0, x.shape[0], batch_size)])


def as_unit_float(images: Tensor) -> Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def train_classifier(images: Tensor, labels: Tensor, num_classes: int, epochs: int = 3,
                     batch_size: int = 128, seed: int = 0, on_batch: Batches | None = None) -> ImageClassifier:
    """Adam for a few epochs on uint8 or [0, 1] images ``(N, C, H, W)``, whole set on ``images.device``;
    ``on_batch(done, total)`` before the first step and after every step."""
    torch.manual_seed(seed)
    C, H, W = images.shape[1:]
    model = ImageClassifier(C, H, W, num_classes).to(images.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    x_all, n = as_unit_float(images), images.shape[0]
    total, done = epochs * -(-n // batch_size), 0
    if on_batch:
        on_batch(0, total)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(images.device)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x_all[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if on_batch:
                on_batch(done, total)
    return model.eval()


def cache_dir() -> Path:
    return Path(os.environ.get("MMGEN_CACHE", Path.home() / ".cache" / "mmgen"))


def data_key(images: Tensor, labels: Tensor) -> str:
    """A fingerprint of all the training data, so a cached classifier is never used on other data."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.cpu().contiguous().numpy().tobytes())
    h.update(labels.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_or_train_classifier(train_images: Tensor, train_labels: Tensor, num_classes: int,
                             name: str = "classifier", epochs: int = 3) -> ImageClassifier:
    """The cached classifier for exactly this training data, training (and caching) it if needed."""
    key = f"{data_key(train_images, train_labels)}-v{CLASSIFIER_VERSION}-e{epochs}"
    path = cache_dir() / "classifiers" / f"{name}-{key}.safetensors"
    C, H, W = train_images.shape[1:]
    with preserved_rng(train_images.device):  # building or training it must not move the caller's RNG
        if path.is_file():
            model = ImageClassifier(C, H, W, num_classes)
            weights, _ = load_tensors(path)
            model.load_state_dict(weights)
            return model.to(train_images.device).eval()
        model = train_classifier(train_images, train_labels, num_classes, epochs=epochs,
                                 on_batch=_ON_TRAINING.get())
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, model.state_dict(), {"epochs": epochs})
    return model


def preserved_rng(device: torch.device):
    """A context that restores the CPU RNG and the device's RNG (cuda or mps) on exit."""
    if device.type == "cuda":
        return torch.random.fork_rng(devices=[device.index or 0], device_type="cuda")
    if device.type == "mps":
        return torch.random.fork_rng(devices=[0], device_type="mps")
    return torch.random.fork_rng(devices=[])
