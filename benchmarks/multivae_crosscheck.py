"""Cross-check of the JMVAE and MVTCAE families against MultiVae 1.0.3, a second implementation (issue 24): the same
weights, batch and noise in both libraries, and the per-example loss and its terms side by side.

MultiVae is not a dependency of mmgen, not even an optional one: it lives in a scratch venv outside the checkout,
which reads mmgen from the checkout through PYTHONPATH (nothing is installed from it; the symlink stands in for
pyproject's ``package-dir`` entry ``mmgen_plugins = "plugins"``). From the repository root:

    python3 -m venv /tmp/multivae-venv
    /tmp/multivae-venv/bin/pip install multivae==1.0.3 typer rich safetensors pluggy
    mkdir -p /tmp/mmgen-path && ln -sfn "$PWD/plugins" /tmp/mmgen-path/mmgen_plugins
    PYTHONPATH="$PWD:/tmp/mmgen-path" OMP_NUM_THREADS=1 /tmp/multivae-venv/bin/python benchmarks/multivae_crosscheck.py

The model: two modalities built by mmgen's own plugins, a 1x4x4 binary image (``image``: MLP, Bernoulli logits) and
a 5-class label (``label``: embedding + MLP, categorical logits), latent size 3. MultiVae's encoders, decoders and
(JMVAE) joint encoder are thin BaseEncoder/BaseDecoder/BaseJointEncoder wrappers around the very same modules, so
both libraries hold the same parameter tensors; MultiVae gets the label one-hot (its ``categorical`` likelihood's
input), the wrappers hand mmgen its class index. The noise: every ``Normal.rsample`` in either library returns
``loc + scale * eps`` for one fixed ``eps`` (both reparameterize through it), and each forward must draw exactly
once. Settings: JMVAE α = 0.1 and no warm-up (MultiVae ``warmup=0``, ``beta=1``; mmgen β = 1); MVTCAE α = 5/6,
β = 2.5 in both. Everything runs in float64, so a difference above ~1e-12 is a difference of formula, not rounding.

MultiVae returns only the batch's loss, so the per-example loss is its loss on a batch of that one example
(neither objective couples examples; the batch rows check that). Terms: MVTCAE's come from MultiVae's metrics;
JMVAE's (which it does not report) from its loss with (α, beta) set to (0, 0), then (0, 1), then the real ones.
Then the checks: gradients over the shared weights, MVTCAE with missing modalities, MultiVae's default JMVAE
warm-up, grey pixels under a Bernoulli. mmJSD is skipped: MultiVae 1.0.3 has no mmJSD model. A difference is
printed, never fatal: the exit status is non-zero only on a crash, or (one line) when MultiVae is not importable.
Options: ``--dtype float32`` (the same in single precision), ``--batch-size 6``, ``--seed 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import sys
from collections.abc import Callable
from types import SimpleNamespace
from unittest import mock

import torch
from torch import Tensor
from torch.distributions import Normal

from mmgen_plugins.families.jmvae import JMVAE, JMVAEConfig
from mmgen_plugins.families.mvtcae import MVTCAE, MVTCAEConfig
from mmgen_plugins.image import BernoulliImage, ImageConfig
from mmgen_plugins.label import CategoricalLabel, LabelConfig

LATENT, CLASSES, SHAPE = 3, 5, (1, 4, 4)
KINDS = {"image": BernoulliImage, "label": CategoricalLabel}
LIKELIHOODS = {"image": "bernoulli", "label": "categorical"}  # MultiVae's names for the same two likelihoods
JMVAE_ALPHA, MVTCAE_ALPHA, MVTCAE_BETA = 0.1, 5 / 6, 2.5
Terms = dict[str, float]


def multivae_api() -> SimpleNamespace:
    """MultiVae's classes, imported here rather than at the top so that the script imports without MultiVae
    (tests/test_benchmarks.py imports every benchmark from mmgen's own venv)."""
    try:
        import multivae.models as models
        import multivae.models.mvtcae.mvtcae_model as mvtcae_module
        from multivae.data.datasets.base import IncompleteDataset, MultimodalBaseDataset
        from multivae.models.nn import BaseJointEncoder
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder
    except ImportError as exc:
        sys.exit(f"multivae_crosscheck: MultiVae 1.0.3 is not importable here ({exc}); run this script from the "
                 "scratch venv its docstring sets up, never from mmgen's own")
    return SimpleNamespace(models=models, mvtcae_module=mvtcae_module, Dataset=MultimodalBaseDataset,
                           IncompleteDataset=IncompleteDataset,
                           BaseJointEncoder=BaseJointEncoder, ModelOutput=ModelOutput, BaseEncoder=BaseEncoder,
                           BaseDecoder=BaseDecoder)


# ---- the same networks, batch and noise -------------------------------------------------------------------------
def modalities() -> dict:
    """mmgen's image and label plugins, tiny: one hidden layer of 8 in every network."""
    image = ImageConfig(kind="image", shape=SHAPE, encoder_hidden=[8], decoder_hidden=[8])
    label = LabelConfig(kind="label", num_classes=CLASSES, encoder_hidden=[8], decoder_hidden=[8])
    return {"image": BernoulliImage("image", image, LATENT), "label": CategoricalLabel("label", label, LATENT)}


def fixed_batch(B: int, seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """mmgen's batch (label as class index), MultiVae's (label one-hot) and the noise ``eps`` ``(B, LATENT)``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.bernoulli(torch.full((B, *SHAPE), 0.5), generator=g)  # binary: MultiVae's Bernoulli validates
    label = torch.randint(0, CLASSES, (B,), generator=g)
    eps = torch.randn(B, LATENT, generator=g)
    one_hot = torch.nn.functional.one_hot(label, CLASSES).to(image.dtype)
    return {"image": image, "label": label}, {"image": image, "label": one_hot}, eps


@contextlib.contextmanager
def fixed_noise(eps: Tensor):
    """Within it, ``Normal.rsample()`` returns ``loc + scale * eps``; yields the list of draws made."""
    draws: list[tuple[int, ...]] = []

    def rsample(self: Normal, sample_shape=torch.Size()) -> Tensor:
        if tuple(sample_shape) or self.loc.shape != eps.shape:
            raise RuntimeError(f"a draw of shape {tuple(sample_shape)} + {tuple(self.loc.shape)}, "
                               f"not {tuple(eps.shape)}")
        draws.append(tuple(self.loc.shape))
        return self.loc + self.scale * eps

    with mock.patch.object(Normal, "rsample", rsample):
        yield draws


def once(forward: Callable[[], object], eps: Tensor, grad: bool = False) -> object:
    """``forward()`` under the fixed noise; it must draw exactly once (one reparameterized z per example)."""
    with fixed_noise(eps) as draws, torch.set_grad_enabled(grad):
        out = forward()
    if len(draws) != 1:
        raise RuntimeError(f"expected one draw of z, saw {len(draws)}: {draws}")
    return out


def as_mmgen(name: str, x: Tensor) -> Tensor:
    """MultiVae's input of a modality -> mmgen's (one-hot label -> class index)."""
    return x.argmax(-1) if name == "label" else x


def multivae_networks(api: SimpleNamespace, model) -> tuple[dict, dict, object]:
    """MultiVae encoders and decoders that call the mmgen model's own modality networks, and a joint encoder that
    calls its ``joint`` (JMVAE's; None for a model without one)."""

    class Encoder(api.BaseEncoder):
        def __init__(self, name: str, modality):
            super().__init__()
            self.key, self.modality = name, modality

        def forward(self, x):
            mu, logvar = self.modality.encode(as_mmgen(self.key, x))
            return api.ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(api.BaseDecoder):
        def __init__(self, modality):
            super().__init__()
            self.modality = modality

        def forward(self, z):
            return api.ModelOutput(reconstruction=self.modality.decode(z))  # logits, as MultiVae's two likelihoods take

    class Joint(api.BaseJointEncoder):
        def __init__(self, joint):
            super().__init__()
            self.joint, self.latent_dim = joint, LATENT

        def forward(self, x: dict):
            mu, logvar = self.joint({n: as_mmgen(n, v) for n, v in x.items()})
            return api.ModelOutput(embedding=mu, log_covariance=logvar)

    named, joint = model.modalities.items(), getattr(model, "joint", None)
    return ({n: Encoder(n, m) for n, m in named}, {n: Decoder(m) for n, m in named},
            None if joint is None else Joint(joint))


def same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> int:
    """The number of parameter tensors, after checking that both models hold exactly the same ones."""
    ids_a, ids_b = {id(p) for p in a.parameters()}, {id(p) for p in b.parameters()}
    if ids_a != ids_b:
        raise RuntimeError(f"the two models do not share their weights ({len(ids_a)} vs {len(ids_b)} tensors)")
    return len(ids_a)


# ---- the two families --------------------------------------------------------------------------------------------
def build_jmvae(api: SimpleNamespace, seed: int, warmup: int = 0):
    torch.manual_seed(seed)
    config = JMVAEConfig(latent_dim=LATENT, alpha=JMVAE_ALPHA, joint_features=4, joint_hidden=[8])
    ours = JMVAE.create(modalities(), config, lambda category, kind: KINDS[kind])
    encoders, decoders, joint = multivae_networks(api, ours)
    mv_config = api.models.JMVAEConfig(n_modalities=2, latent_dim=LATENT, decoders_dist=dict(LIKELIHOODS),
                                       alpha=JMVAE_ALPHA, beta=1.0, warmup=warmup)
    return ours, api.models.JMVAE(mv_config, encoders=encoders, decoders=decoders, joint_encoder=joint)


def build_mvtcae(api: SimpleNamespace, seed: int):
    torch.manual_seed(seed)
    ours = MVTCAE(modalities(), MVTCAEConfig(latent_dim=LATENT, alpha=MVTCAE_ALPHA, beta=MVTCAE_BETA))
    encoders, decoders, _ = multivae_networks(api, ours)
    mv_config = api.models.MVTCAEConfig(n_modalities=2, latent_dim=LATENT, decoders_dist=dict(LIKELIHOODS),
                                        alpha=MVTCAE_ALPHA, beta=MVTCAE_BETA)
    return ours, api.models.MVTCAE(mv_config, encoders=encoders, decoders=decoders)


def mmgen_jmvae_terms(model: JMVAE, batch: dict, eps: Tensor, beta: float = 1.0) -> Terms:
    out = once(lambda: model(batch, beta=beta), eps)
    t = {k: float(v) for k, v in out.terms.items()}
    return {"loss": float(out.loss), "nll (both)": t["nll/image"] + t["nll/label"], "KL(q(z|X)‖p)": t["kl"],
            "Σ KL(q(z|X)‖q(z|x_m))": t["kl/image"] + t["kl/label"]}


def multivae_jmvae_terms(api: SimpleNamespace, model, data: dict, eps: Tensor) -> Terms:
    """MultiVae reports no JMVAE terms: its loss with (α, beta) = (0, 0) is the nll, (0, 1) adds the KL to p(z)."""
    alpha, beta = model.alpha, model.beta
    losses = {}
    for key, weights in {"nll": (0.0, 0.0), "nll+kl": (0.0, 1.0), "loss": (alpha, beta)}.items():
        model.alpha, model.beta = weights  # MultiVae's forward reads both attributes on every call
        losses[key] = float(once(lambda: model(api.Dataset(data=data)), eps).loss)
    model.alpha, model.beta = alpha, beta
    return {"loss": losses["loss"], "nll (both)": losses["nll"], "KL(q(z|X)‖p)": losses["nll+kl"] - losses["nll"],
            "Σ KL(q(z|X)‖q(z|x_m))": (losses["loss"] - losses["nll+kl"]) / alpha}


def mmgen_mvtcae_terms(model: MVTCAE, batch: dict, eps: Tensor) -> Terms:
    out = once(lambda: model(batch), eps)
    t = {k: float(v) for k, v in out.terms.items()}
    return {"loss": float(out.loss), "nll/image": t["nll/image"], "nll/label": t["nll/label"],
            "KL(q(z|X)‖p)": t["kl"], "KL(q(z|X)‖q(z|image))": t["kl/image"], "KL(q(z|X)‖q(z|label))": t["kl/label"]}


def multivae_mvtcae_terms(api: SimpleNamespace, model, data: dict, eps: Tensor) -> Terms:
    """From MultiVae's metrics, which are sums over the batch: divided by B here, as mmgen's terms are means."""
    out = once(lambda: model(api.Dataset(data=data)), eps)
    m, B = out.metrics, eps.shape[0]
    return {"loss": float(out.loss), "nll/image": float(m["image"]) / B, "nll/label": float(m["label"]) / B,
            "KL(q(z|X)‖p)": float(m["joint_divergence"]) / B, "KL(q(z|X)‖q(z|image))": float(m["kld_image"]) / B,
            "KL(q(z|X)‖q(z|label))": float(m["kld_label"]) / B}


# ---- comparing ---------------------------------------------------------------------------------------------------
def per_example(ours: Callable, theirs: Callable, batch: dict, data: dict, eps: Tensor) -> tuple[list, list]:
    """Each library's terms on each example alone (a batch of one): two lists of B dicts."""
    rows = range(eps.shape[0])

    def pick(tensors: dict, b: int) -> dict:
        return {n: x[b:b + 1] for n, x in tensors.items()}  # (1, *event): example b alone

    return ([ours(pick(batch, b), eps[b:b + 1]) for b in rows], [theirs(pick(data, b), eps[b:b + 1]) for b in rows])


def table(family: str, a: list[Terms], b: list[Terms]) -> list[str]:
    """Markdown rows: each term's mean over the examples in both libraries, and the largest per-example |Δ|."""
    lines = []
    for term in a[0]:
        x, y = [r[term] for r in a], [r[term] for r in b]
        worst = max(abs(p - q) for p, q in zip(x, y))
        rel = worst / max(max(abs(v) for v in x), 1e-300)
        lines.append(f"| {family} | {term} | {sum(x) / len(x):.9f} | {sum(y) / len(y):.9f} | {worst:.1e} | {rel:.1e} |")
    return lines


def largest_gap(a: list[Terms], b: list[Terms], term: str = "loss") -> float:
    return max(abs(p[term] - q[term]) for p, q in zip(a, b))


def gradient_gap(model: torch.nn.Module, losses: tuple[Callable[[], Tensor], ...], eps: Tensor) -> tuple[float, float]:
    """The largest |Δ| between the gradients of the two libraries' batch losses over the shared trainable weights,
    and the largest gradient entry (None, a weight the loss does not reach, counts as 0)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.autograd.grad(once(loss, eps, grad=True), params, allow_unused=True) for loss in losses]
    flat = [torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])
            for gs in grads]
    return float((flat[0] - flat[1]).abs().max()), float(flat[0].abs().max())


def check_batches(pairs: dict, batch: dict, data: dict, eps: Tensor) -> None:
    """The whole batch in one call, in each library, against the mean of its per-example losses."""
    for family, (fns, (a, b)) in pairs.items():
        whole_a, whole_b = fns[0](batch, eps)["loss"], fns[1](data, eps)["loss"]
        mean_a, mean_b = (sum(r["loss"] for r in rows) / len(rows) for rows in (a, b))
        print(f"- {family}, the whole batch in one call: mmgen {whole_a:.9f}, MultiVae {whole_b:.9f} "
              f"(|Δ| {abs(whole_a - whole_b):.1e}); each minus the mean of its per-example losses: "
              f"{whole_a - mean_a:.1e}, {whole_b - mean_b:.1e} (both take the batch mean)")


def check_mvtcae_floor(api: SimpleNamespace, model: MVTCAE, fns: tuple, losses: tuple, gap: float,
                       batch: dict, data: dict, eps: Tensor) -> None:
    """MVTCAE again, with MultiVae's product of experts made exact (its ``poe`` adds 1e-8 to every variance)."""
    exact_poe = functools.partial(api.mvtcae_module.poe, eps=0.0)
    with mock.patch.object(api.mvtcae_module, "poe", exact_poe):
        exact = per_example(*fns, batch, data, eps)
        exact_gradient, _ = gradient_gap(model, losses, eps)
    print(f"- MVTCAE with MultiVae's product of experts given eps = 0 instead of its 1e-8 added to each expert's "
          f"variance: max |Δ loss| {gap:.1e} -> {largest_gap(*exact):.1e}, max |Δ gradient| -> {exact_gradient:.1e}")


def check_mvtcae_missing(api: SimpleNamespace, ours: MVTCAE, theirs, batch: dict, data: dict, eps: Tensor) -> None:
    """Weak supervision: every third example lacks the label, every third the image (mmgen's ``present``, MultiVae's
    IncompleteDataset masks); with MultiVae's 1e-8 variance floor, then without it."""
    k = torch.arange(eps.shape[0]) % 3
    present = {"image": k != 2, "label": k != 1}
    gaps = []
    for poe in (api.mvtcae_module.poe, functools.partial(api.mvtcae_module.poe, eps=0.0)):
        with mock.patch.object(api.mvtcae_module, "poe", poe):
            a = once(lambda: ours(batch, present=present), eps).loss
            gaps.append(abs(float(a - once(lambda: theirs(api.IncompleteDataset(data, present)), eps).loss)))
    print(f"- MVTCAE with missing modalities (1/3 lack the label, 1/3 the image): batch loss |Δ| {gaps[0]:.1e}, "
          f"{gaps[1]:.1e} without the floor")


def check_jmvae_warmup(api: SimpleNamespace, seed: int, at_one: list[Terms], batch: dict, data: dict,
                       eps: Tensor) -> None:
    """MultiVae's JMVAE with its default warmup = 10 and no epoch passed, against mmgen at β = 0.1 and at 1."""
    ours, theirs = build_jmvae(api, seed, warmup=10)
    a, b = per_example(lambda x, e: mmgen_jmvae_terms(ours, x, e, beta=0.1),
                       lambda x, e: {"loss": float(once(lambda: theirs(api.Dataset(data=x)), e).loss)},
                       batch, data, eps)
    print(f"- JMVAE, MultiVae's default warmup = 10 with forward() given no epoch (it takes epoch = 1) against "
          f"mmgen at β = 0.1: max |Δ loss| {largest_gap(a, b):.1e} (against mmgen at β = 1: "
          f"{largest_gap(at_one, b):.1e})")


def check_grey_pixels(api: SimpleNamespace, ours: MVTCAE, theirs, batch: dict, data: dict, eps: Tensor) -> None:
    """Grey values in [0, 1] under the Bernoulli likelihood (continuous MNIST, as the MVAE paper scores it)."""
    grey = torch.full_like(data["image"], 0.5)
    try:
        once(lambda: theirs(api.Dataset(data={**data, "image": grey})), eps)
        note = "MultiVae scores them"
    except ValueError as exc:
        note = f"MultiVae raises {type(exc).__name__} (torch's argument validation: {str(exc)[:40]}...)"
    nll = mmgen_mvtcae_terms(ours, {**batch, "image": grey}, eps)["nll/image"]
    print(f"- grey (non-binary) pixels under the Bernoulli likelihood: mmgen scores them (nll/image {nll:.4f}); {note}")


def parse_args(doc: str, dtype: bool = True) -> argparse.Namespace:
    """The options every cross-check script takes: ``--batch-size``, ``--seed`` and (with ``dtype``) ``--dtype``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    if dtype:
        ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    return ap.parse_args()


def main() -> None:
    args = parse_args(__doc__)
    api = multivae_api()
    version = importlib.metadata.version("multivae")
    torch.set_default_dtype(getattr(torch, args.dtype))
    batch, data, eps = fixed_batch(args.batch_size, args.seed)

    jm_ours, jm_theirs = build_jmvae(api, args.seed)
    tc_ours, tc_theirs = build_mvtcae(api, args.seed)
    jm_fns = (lambda x, e: mmgen_jmvae_terms(jm_ours, x, e), lambda x, e: multivae_jmvae_terms(api, jm_theirs, x, e))
    tc_fns = (lambda x, e: mmgen_mvtcae_terms(tc_ours, x, e), lambda x, e: multivae_mvtcae_terms(api, tc_theirs, x, e))
    jm, tc = per_example(*jm_fns, batch, data, eps), per_example(*tc_fns, batch, data, eps)

    print(f"mmgen vs MultiVae {version}, {args.dtype}, B = {args.batch_size} examples, seed {args.seed}; weights: "
          f"JMVAE {same_tensors(jm_ours, jm_theirs)} and MVTCAE {same_tensors(tc_ours, tc_theirs)} parameter "
          "tensors, shared by both libraries; the same eps in every draw.\n")
    print("| family | term (per example) | mmgen, mean | MultiVae, mean | max abs Δ | relative |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table("JMVAE", *jm) + table("MVTCAE", *tc)))

    print("\nChecks:")
    check_batches({"JMVAE": (jm_fns, jm), "MVTCAE": (tc_fns, tc)}, batch, data, eps)
    jm_losses = (lambda: jm_ours(batch).loss, lambda: jm_theirs(api.Dataset(data=data)).loss)
    tc_losses = (lambda: tc_ours(batch).loss, lambda: tc_theirs(api.Dataset(data=data)).loss)
    for family, model, losses in [("JMVAE", jm_ours, jm_losses), ("MVTCAE", tc_ours, tc_losses)]:
        gap, size = gradient_gap(model, losses, eps)
        print(f"- {family}, gradients of the batch loss over every shared weight: max |Δ| {gap:.1e} "
              f"(largest entry {size:.2e})")
    check_mvtcae_floor(api, tc_ours, tc_fns, tc_losses, largest_gap(*tc), batch, data, eps)
    check_mvtcae_missing(api, tc_ours, tc_theirs, batch, data, eps)
    check_jmvae_warmup(api, args.seed, jm[0], batch, data, eps)
    check_grey_pixels(api, tc_ours, tc_theirs, batch, data, eps)
    jsd = [n for n in dir(api.models) if "jsd" in n.lower()]
    print(f"- mmJSD: not compared, MultiVae {version} has no mmJSD model" if not jsd else
          f"- mmJSD: MultiVae {version} has {jsd}, which this script does not compare yet")


if __name__ == "__main__":
    main()
