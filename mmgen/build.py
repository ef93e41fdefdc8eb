"""Turn a validated recipe into objects: modalities, fusion, model, dataset (via the plugin registry)."""

from __future__ import annotations

import torch

from mmgen.dataset import Dataset
from mmgen.errors import MmgenError
from mmgen.model import MultimodalVAE
from mmgen.plugins import get_registry
from mmgen.recipe import Recipe


def build_model(recipe: Recipe) -> MultimodalVAE:
    """Instantiate the model on the CPU, seeded by ``recipe.seed`` so weights are reproducible."""
    registry = get_registry()
    torch.manual_seed(recipe.seed)
    D = recipe.model.latent_dim
    try:
        modalities = {
            name: registry.lookup("modalities", cfg.kind)(name, cfg, D) for name, cfg in recipe.modalities.items()
        }
        fusion_cls = registry.lookup("fusions", recipe.model.fusion.kind)
        fusion = fusion_cls(recipe.model.fusion, D, len(modalities))
    except MmgenError:
        raise
    except (ValueError, TypeError) as exc:
        raise MmgenError(f"cannot build the model of recipe {recipe.name!r}: {exc}")
    return MultimodalVAE(modalities, fusion, recipe.model)


def build_dataset(recipe: Recipe) -> Dataset:
    return get_registry().lookup("datasets", recipe.data.kind)(recipe.data)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; asking for an absent device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MmgenError("--device cuda was asked for, but torch sees no CUDA device", hint="use --device auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MmgenError("--device mps was asked for, but torch sees no MPS device", hint="use --device auto")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise MmgenError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)
