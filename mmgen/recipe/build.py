"""Turn a validated recipe into objects: the model family with its modalities, the dataset (via the plugin
registry), the device."""

from __future__ import annotations

import torch
from torch import nn

from mmgen.config import Recipe, TrainConfig
from mmgen.config.train import cuda_index_problem
from mmgen.errors import MmgenError
from mmgen.plugin.dataset import Dataset
from mmgen.plugin.model import Model
from mmgen.plugin.registry import get_registry
from mmgen.recipe.memory import decoded_bytes, part_sizes, refuse_if_too_big


def _modality(recipe: Recipe, family: type[Model], name: str) -> nn.Module:
    """One modality built with the latent widths its family asks for. A modality plugin written before
    families had private latents takes no ``decode_dim``: it serves every family whose widths are equal."""
    cfg = recipe.modalities[name]
    widths = family.latent_widths(recipe.model, name, cfg)
    cls = get_registry().lookup("modalities", cfg.kind)
    if widths.decode == widths.encode:
        return cls(name, cfg, widths.encode)
    return cls(name, cfg, widths.encode, decode_dim=widths.decode)


def _build(recipe: Recipe) -> Model:
    registry = get_registry()
    family = registry.lookup("models", recipe.model.kind)
    try:
        modalities = {name: _modality(recipe, family, name) for name in recipe.modalities}
        return family.create(modalities, recipe.model, registry.lookup)
    except (ValueError, TypeError) as exc:  # a plugin's own checks; MmgenError passes through as is
        raise MmgenError(f"cannot build the model of recipe {recipe.name!r}: {exc}")


def _parts(model: Model) -> dict[str, nn.Module]:
    """The model's parts by the recipe key that configures them: ``modalities.NAME``, then the family's own."""
    parts: dict[str, nn.Module] = {f"modalities.{n}": m for n, m in model.modalities.items()}
    return parts | {f"model.{n}": m for n, m in model.named_children() if n != "modalities"}


def check_model_size(recipe: Recipe) -> int | None:
    """The model's parameter count, refused before allocation when its weights cannot fit in memory."""
    what, hint = f"the model of recipe {recipe.name!r}", "check model.latent_dim and the modalities' sizes"
    sizes = part_sizes(lambda: _parts(_build(recipe)), what, hint)
    if sizes is None:
        return None
    total = sum(size.parameters for size in sizes.values())
    largest = max(sizes, key=lambda name: sizes[name].nbytes)
    refuse_if_too_big(f"{what}, with {total:,} parameters (most in {largest}),",
                      sum(size.nbytes for size in sizes.values()), "cpu", hint=hint)
    return total


def check_probe_size(recipe: Recipe, model: Model) -> None:
    """``train.crossmodal_every``'s probe decodes ``crossmodal_examples`` // (most classes) samples of each
    class at once (mmgen.eval.probe); refused before training when they cannot fit."""
    if not recipe.train.crossmodal_every:
        return
    examples = recipe.train.crossmodal_examples
    spaces = [space.size for m in model.modalities.values() if (space := m.class_space()) is not None]
    per_class = examples // max(spaces, default=1)
    default = TrainConfig.model_fields["crossmodal_examples"].default
    refuse_if_too_big(f"train.crossmodal_examples = {examples:,} (the probe decodes {per_class:,} samples of a class "
                      "at once)",
                      per_class * decoded_bytes(model), "cpu",
                      hint=f"use a smaller train.crossmodal_examples; the default is {default:,}")


def build_model(recipe: Recipe) -> Model:
    """Instantiate the recipe's model family on the CPU; weights are seeded by ``recipe.seed``.

    Its size is checked first, without allocating it. The seeding happens in a forked RNG, so building
    a model (for example to sample from a run) leaves the caller's random stream alone. The training
    probe's size is checked by ``check_probe_size`` where training is planned: a sampled or scored run
    does not run that probe.
    """
    check_model_size(recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        return _build(recipe)


def class_field_of(recipe: Recipe) -> str | None:
    """The dataset field holding each example's class, the ground truth of cross-modal metrics; None if none."""
    return get_registry().lookup("datasets", recipe.data.kind).class_field


def check_fits(model: Model, split: dict[str, torch.Tensor]) -> None:
    """Encode and decode two examples of each field, then take the whole objective on them, so a
    modality that does not fit its data (a wrong image shape, labels out of range) or a fusion the
    objective cannot use fails here with its name, before any run directory is made."""
    batch = {}
    for name in model.names:
        modality = model.modalities[name]
        try:
            with torch.no_grad():
                x = batch[name] = modality.prepare(split[name][:2])
                z = model.posterior({name: x}).mean  # (2, L): through this modality's encoder
                modality.log_likelihood(model.decode(z, [name])[name], x)
        except (RuntimeError, ValueError, IndexError) as exc:
            shape = tuple(split[name].shape[1:])
            raise MmgenError(
                f"modalities.{name} ({modality.config.kind!r}) does not fit the data field {name!r} "
                f"of shape {shape}, dtype {split[name].dtype}: {str(exc).splitlines()[0]}",
                hint="check the modality's shape settings against the dataset",
            )
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the check must not move the caller's RNG
            model(batch)  # the training objective, as the first step will take it
    except (RuntimeError, ValueError, IndexError, TypeError, AttributeError, NotImplementedError) as exc:
        raise MmgenError(
            f"the {model.describe()} of this recipe fails on two examples: {exc.__class__.__name__}: "
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
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise MmgenError("--device mps was asked for, but torch sees no MPS device", hint="use --device auto")
        return torch.device("mps")
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise MmgenError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    problem = cuda_index_problem(name)
    if problem:
        raise MmgenError(f"--device {name}: {problem}")
    if not torch.cuda.is_available():
        raise MmgenError(f"--device {name} was asked for, but torch sees no CUDA device", hint="use --device auto")
    index = int(name[5:]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise MmgenError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return torch.device(name)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
