"""A run's post-hoc latent sampler: fitted once to the posterior means of its training split, cached beside it.

    sampler = fit_posthoc_sampler(run)                 # a Gaussian mixture (mmgen.model.posthoc); cached
    z = draw_latents(run, sampler, 64, seed=0)         # (64, L) on the run's device, in the model's dtype
    images = run.decode(z)["image"]                    # unconditional samples from the fitted mixture

What is fitted: E q(z | every modality) of each training example that has every modality (with
``data.paired_fraction`` < 1, only the fully paired ones; ``data.missing_at_eval`` concerns the validation
and test splits, never this one). Inputs are prepared as ``mmgen eval`` prepares them (``prepare_fixed``).

The cache: ``sampler-<kind>.safetensors`` in ``run.outputs``, written atomically, holding the mixture and,
in its metadata, the key it was fitted under: the SHA-256 of the canonical JSON of the sampler's settings,
the SHA-256 of the weights the run loaded (of the tensors themselves, whichever file they came from), and
the recipe's sections that change the latents (model, modalities, data but its paths and loader settings).
A file made under another key is fitted again and replaced. A corrupt or unreadable file (its tensors are
checked against a SHA-256 written with them) is only a cache: it is fitted again with a warning (logger
``mmgen.run``) and replaced, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen.errors import CheckpointError, MmgenError
from mmgen.model.inputs import prepare_fixed
from mmgen.model.posthoc import GMM_DEFAULTS, GaussianMixtureSampler, encode_means
from mmgen.model.presence import having, training_presence
from mmgen.plugin.model import Model
from mmgen.recipe.build import build_dataset
from mmgen.run.data_record import check_data_record
from mmgen.run.loaded import Run
from mmgen.storage.tensors import load_tensors, read_metadata, save_tensors

Stage = Callable[[str], None]  # a stage begins, or something happened: one line for the user
SAMPLERS = {GaussianMixtureSampler.kind: GaussianMixtureSampler}  # kind -> class
PRIOR = "prior"  # not fitted: the family's own p(z), the other choice of `--sampler`
CACHE_FORMAT = 1  # bump when what a cached sampler means changes: older files are then refitted
# Dataset settings that move or stream the same training split without changing it.
DATA_PLACES = ("root", "download", "on_device", "workers", "missing_at_eval")
log = logging.getLogger("mmgen.run")


def sampler_class(kind: str) -> type[GaussianMixtureSampler]:
    """The sampler class of ``kind``; an unknown kind is one line listing the kinds."""
    if kind not in SAMPLERS:
        raise MmgenError(f"unknown latent sampler {kind!r}: the kinds are {', '.join(SAMPLERS)}")
    return SAMPLERS[kind]


def sampler_path(run: Run, kind: str) -> Path:
    """Where ``kind``'s cached sampler lives: ``run.outputs / sampler-<kind>.safetensors``."""
    return run.outputs / f"sampler-{kind}.safetensors"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's tensors (``tensors_digest`` of its state dict)."""
    return tensors_digest(model.state_dict())


def tensors_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 of named tensors: each one's name, dtype and shape, then its bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())  # raw bytes: bfloat16 has no numpy dtype
    return h.hexdigest()


def cache_key(run: Run, kind: str, settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(the key, what it is made of): every part that changes the fitted sampler."""
    recipe = run.recipe.model_dump(mode="json")
    parts = {
        "format": CACHE_FORMAT, "kind": kind, "settings": settings, "weights sha256": weights_digest(run.model),
        "model": recipe["model"], "modalities": recipe["modalities"],
        "data": {k: v for k, v in recipe["data"].items() if k not in DATA_PLACES},
    }
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest(), parts


def fit_posthoc_sampler(run: Run, kind: str = "gmm", components: int = GMM_DEFAULTS["components"], seed: int = 0,
                        on_stage: Stage | None = None, batch_size: int = 1000,
                        train: dict[str, Tensor] | None = None) -> GaussianMixtureSampler:
    """The run's sampler of ``kind`` with ``components`` components: from the cache when it was fitted to these
    weights with these settings, else fitted now (EM and input preparation seeded by ``seed``) and cached."""
    cls = sampler_class(kind)
    say = on_stage or (lambda _line: None)
    settings = {"components": components, "seed": seed, "batch_size": batch_size,  # b: batch b's preparation seed
                **{k: v for k, v in GMM_DEFAULTS.items() if k != "components"}}
    key, parts = cache_key(run, kind, settings)
    path = sampler_path(run, kind)
    cached = read_cached(path, cls, key, parts, say)
    if cached is not None:
        say(f"the {kind} latent sampler cached in {path} (fitted to these weights)")
        return cached
    say(f"posterior means of the training split, for the {kind} latent sampler")
    latents = training_latents(run, seed, batch_size, train)  # (N, L)
    say(f"fitting a {components}-component Gaussian mixture to {latents.shape[0]:,} latents of width "
        f"{latents.shape[1]}")
    sampler = cls.fit(latents, components=components, seed=seed)
    write_cache(path, sampler, key, parts, say)
    return sampler


def training_latents(run: Run, seed: int = 0, batch_size: int = 1000, train: dict[str, Tensor] | None = None) -> Tensor:
    """E q(z | every modality) of the training examples that have every modality: ``(N, L)`` on the CPU. Inputs
    are prepared ``batch_size`` at a time (batch b with seed ``seed + b``), so a large split never sits whole
    on the device. ``train``: the stored training split when the caller holds it (``mmgen eval``); else it is
    loaded here, after checking that the data set assembles the examples the run was trained on."""
    model, data = run.model, run.recipe.data
    names = model.names
    if train is None:
        dataset = build_dataset(run.recipe)
        check_data_record(run.run_dir.path, dataset)  # MNIST-SVHN's pairs: the ones it learnt from
        train = dataset.load()["train"]
    n = train[names[0]].shape[0]
    present = training_presence(names, n, data.paired_fraction, data.pairing_seed)
    rows = having(present, names, n).nonzero().squeeze(1)  # (N,) indices of the fully paired examples
    if rows.numel() < 2:
        raise MmgenError(f"only {rows.numel()} of the {n:,} training examples have every modality "
                         f"({', '.join(names)}): too few to fit a latent sampler",
                         hint="train with a larger data.paired_fraction")
    model.eval()
    chunks = []
    for number, start in enumerate(range(0, rows.numel(), batch_size)):
        batch = rows[start : start + batch_size]
        inputs = prepare_fixed(model.modalities, {m: train[m][batch] for m in names}, seed + number, run.device)
        chunks.append(encode_means(model, inputs, batch_size).cpu())  # (b, L)
    return torch.cat(chunks)


def read_cached(path: Path, cls: type[GaussianMixtureSampler], key: str, parts: dict[str, Any],
                say: Stage) -> GaussianMixtureSampler | None:
    """The sampler cached at ``path`` when it was made under ``key``; None when there is none, when it was made
    under another key (said through ``say``), or when it is corrupt (a warning)."""
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
        if meta.get("cache key") != key:
            say(f"{path} was fitted to {changed_parts(meta.get('cache key parts'), parts)}: fitting it again")
            return None
        tensors, meta = load_tensors(path)
        if meta.get("tensors sha256") != tensors_digest(tensors):  # bytes changed after writing
            raise CheckpointError("its tensors do not match the SHA-256 written with them")
        return cls.from_state(tensors, meta)
    except CheckpointError as exc:
        log.warning("mmgen: the cached latent sampler %s is unusable (%s); fitting it again", path, exc)
        say(f"{path} is unusable: fitting it again")
        return None


def changed_parts(old: Any, new: dict[str, Any]) -> str:
    """What differs between the key parts of a cached sampler and today's, in words."""
    if not isinstance(old, dict):
        return "unknown weights and settings"
    changed = [k for k in new if old.get(k) != new[k]]
    words = {"weights sha256": "other weights", "settings": "other settings", "format": "an older format"}
    return ", ".join(words.get(k, f"another {k} section" if k in ("model", "modalities", "data") else f"another {k}")
                     for k in changed) or "another key"


def write_cache(path: Path, sampler: GaussianMixtureSampler, key: str, parts: dict[str, Any], say: Stage) -> None:
    """Cache ``sampler`` at ``path`` atomically; a place that cannot be written is said and skipped (the fitted
    sampler is still returned), never an error."""
    tensors, meta = sampler.state()
    try:
        save_tensors(path, tensors, {**meta, "cache key": key, "cache key parts": parts,
                                     "tensors sha256": tensors_digest(tensors)})
    except OSError as exc:
        log.warning("mmgen: cannot cache the latent sampler in %s (%s); it is fitted again next time",
                    path, exc.strerror or exc)
        return
    say(f"cached the {sampler.kind} latent sampler in {path}")


def draw_latents(run: Run, sampler: GaussianMixtureSampler, n: int, seed: int | None = None) -> Tensor:
    """``n`` latents ``(n, L)`` from ``sampler`` on the run's device in its model's dtype, ready for ``run.decode``.
    A seed makes them the same on every call (on one device); None draws from torch's global stream."""
    reference = model_latent(run.model)  # (1, L)
    if sampler.latent_size != reference.shape[-1]:
        raise MmgenError(f"the {sampler.kind} sampler draws latents of width {sampler.latent_size}, and this run's "
                         f"model reads {reference.shape[-1]}", hint="fit the sampler to this run")
    return sampler.sample(n, seed=seed, device=reference.device, dtype=reference.dtype)


def sample_latents(run: Run, n: int, kind: str = "gmm", seed: int | None = None,
                   on_stage: Stage | None = None) -> Tensor:
    """``mmgen sample RUN --sampler KIND`` and ``mmgen eval``'s latents: ``n`` draws ``(n, L)`` from the run's
    cached (else fitted) sampler of ``kind`` with the default settings."""
    return draw_latents(run, fit_posthoc_sampler(run, kind, on_stage=on_stage), n, seed)


def model_latent(model: Model) -> Tensor:
    """The prior's mean ``(1, L)``: a latent on the model's device, in its dtype."""
    return model.prior((1,)).mean
