"""Turn a validated recipe into objects: modalities, fusion, model, dataset (via the plugin registry), device."""

from __future__ import annotations

import torch

from mmgen.config import Recipe
from mmgen.errors import MmgenError
from mmgen.model.vae import MultimodalVAE
from mmgen.plugin.dataset import Dataset
from mmgen.plugin.registry import get_registry


def build_model(recipe: Recipe) -> MultimodalVAE:
    """Instantiate the model on the CPU; weights are seeded by ``recipe.seed``.

    The seeding happens in a forked RNG, so building a model (for example to sample from a run)
    leaves the caller's random stream alone.
    """
    registry = get_registry()
    D = recipe.model.latent_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        try:
            modalities = {
                name: registry.lookup("modalities", cfg.kind)(name, cfg, D) for name, cfg in recipe.modalities.items()
            }
            fusion = registry.lookup("fusions", recipe.model.fusion.kind)(recipe.model.fusion, D, len(modalities))
        except (ValueError, TypeError) as exc:  # a plugin's own checks; MmgenError passes through as is
            raise MmgenError(f"cannot build the model of recipe {recipe.name!r}: {exc}")
    return MultimodalVAE(modalities, fusion, recipe.model)


def class_field_of(recipe: Recipe) -> str | None:
    """The dataset field holding each example's class, the ground truth of cross-modal metrics; None if none."""
    return get_registry().lookup("datasets", recipe.data.kind).class_field


def check_fits(model: MultimodalVAE, split: dict[str, torch.Tensor]) -> None:
    """Encode and decode two examples of each field, then take the whole objective on them, so a
    modality that does not fit its data (a wrong image shape, labels out of range) or a fusion the
    objective cannot use fails here with its name, before any run directory is made."""
    batch = {}
    for name in model.names:
        modality = model.modalities[name]
        try:
            with torch.no_grad():
                x = batch[name] = modality.prepare(split[name][:2])
                mu, _ = modality.encode(x)
                modality.log_likelihood(modality.decode(mu), x)
        except (RuntimeError, ValueError, IndexError) as exc:
            shape = tuple(split[name].shape[1:])
            raise MmgenError(
                f"modalities.{name} ({modality.config.kind!r}) does not fit the data field {name!r} "
                f"of shape {shape}, dtype {split[name].dtype}: {str(exc).splitlines()[0]}",
                hint="check the modality's shape settings against the dataset",
            )
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the check must not move the caller's RNG
            model(batch)
    except (RuntimeError, ValueError, IndexError, TypeError, AttributeError, NotImplementedError) as exc:
        raise MmgenError(
            f"the model of this recipe (fusion {model.fusion.config.kind!r}, objective "
            f"{model.config.objective!r}) fails on two examples: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            hint="check the fusion plugin's posterior against mmgen.Posterior",
        )


def build_dataset(recipe: Recipe) -> Dataset:
    """The recipe's dataset object (reads nothing yet: ``load()`` does)."""
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
