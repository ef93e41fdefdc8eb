"""Cross-check of the MMVAE+ family against MultiVae 1.0.3's MMVAEPlus: same weights, batch and noise, float64,
the per-example loss and terms side by side (the method and scratch venv of ``multivae_crosscheck.py``). From the
repository root (options ``--batch-size 6``, ``--seed 0``; a difference is printed, never fatal):

    mkdir -p /tmp/mmgen-path && ln -sfn "$PWD/plugins" /tmp/mmgen-path/mmgen_plugins
    PYTHONPATH="$PWD:/tmp/mmgen-path" OMP_NUM_THREADS=1 /tmp/multivae-venv/bin/python \
        benchmarks/multivae_crosscheck_mmvaeplus.py

Model: ``multivae_crosscheck``'s image and label, z of D = 3 and w_m of P = 2; MultiVae's encoders split mmgen's
expert [z | w_m] into ``embedding``/``log_covariance`` and ``style_embedding``/``style_log_covariance``; its decoders
call mmgen's. Common setting: MultiVae ``prior_and_posterior_dist="normal"``, β = 2.5, rescale factors = λ = 1, K = 1,
mmgen ``objective="iwae"`` against ``loss="iwae_looser"`` (the same stratified log-weight, the mean over components
outside the log). Not matchable: MultiVae's default Laplace posteriors/priors (mmgen is Gaussian), and r_n's
parameters (σ_n = s·P·softmax(ρ_n) in mmgen, exp(lv_n / 2) in MultiVae: both 1 at start, so their gradients are
compared through the change of variables). Noise: one bank of draws (z, w_m, and a stand-in w̃_n ~ r_n for every
component m and other modality n) is played to each library in the order it asks (``Normal.rsample`` patched,
count and shapes checked). MultiVae's terms: its loss with β = 0 and one rescale factor at 0 (linear at K = 1).

Findings (seed 0): iwae/iwae_looser agree to ~1e-15 in loss, terms and gradients at K = 1 and 3, with missing
modalities too; the differences, each reproduced exactly by the script:
* the batch: MultiVae's loss is the SUM over examples (as the authors' m_elbo), mmgen's the mean: a scale only.
* ``elbo`` (mmgen's default) takes KL(q(w_m|x_m)‖p(w_m)) in closed form, MultiVae (and the authors' code, whose
  m_elbo is the K-draw iwae) the one-draw log q − log p: equal in expectation, so both are the paper's objective.
* DReG (mmgen ``dreg`` against ``dreg_looser``): MultiVae detaches every component of q(z|X) (Shi et al.'s MMVAE
  m_dreg), mmgen only the sampling one plus a responsibility term; MultiVae weights the encoder's path gradient
  w̃² whatever β, mmgen (1 − β) w̃ + β w̃²; and MultiVae's value is the surrogate Σ_k w̃_k log w_k, not the bound.
  Gradients agree once mmgen is given MultiVae's rules (``multivae_dreg``). At K = 1 both are unbiased (the score
  of a stratified mixture has mean 0); at K > 1 only mmgen's factor is Tucker et al.'s for β ≠ 1. The paper only
  says DReG; its authors' m_dreg scores under the live posteriors (neither library's choice) with w̃².
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable
from types import SimpleNamespace
from unittest import mock

import torch
from multivae_crosscheck import (
    CLASSES,
    LIKELIHOODS,
    SHAPE,
    Terms,
    as_mmgen,
    fixed_batch,
    largest_gap,
    parse_args,
    table,
)
from multivae_crosscheck import multivae_api as crosscheck_api
from multivae_crosscheck import multivae_networks as plain_networks
from torch import Tensor
from torch.distributions import Normal

from mmgen_plugins.families.mmvaeplus import MMVAEPlus, MMVAEPlusConfig
from mmgen_plugins.image import BernoulliImage, ImageConfig
from mmgen_plugins.label import CategoricalLabel, LabelConfig

D, P, M, BETA = 3, 2, 2, 2.5  # shared z, private w_m, modalities, β
Bank = dict[str, Tensor]


def multivae_api() -> SimpleNamespace:
    """``multivae_crosscheck``'s MultiVae classes (it exits with a line where MultiVae is not importable), and the
    encoder base of MultiVae's models with private latents; imported here, so the script imports without them."""
    api = crosscheck_api()
    from multivae.models.nn import BaseMultilatentEncoder

    api.Encoder = BaseMultilatentEncoder
    return api


# ---- the same networks and noise ---------------------------------------------------------------------------------
def private_modalities() -> dict:
    image = ImageConfig(kind="image", shape=SHAPE, encoder_hidden=[8], decoder_hidden=[8])
    label = LabelConfig(kind="label", num_classes=CLASSES, encoder_hidden=[8], decoder_hidden=[8])
    return {"image": BernoulliImage("image", image, D + P), "label": CategoricalLabel("label", label, D + P)}


def noise_bank(K: int, B: int, seed: int) -> Bank:
    g = torch.Generator().manual_seed(seed + 1)
    return {"z": torch.randn(K, M, B, D, generator=g), "w": torch.randn(K, M, B, P, generator=g),
            "aux": torch.randn(M, K, M, B, P, generator=g)}  # aux[n, k, m]: w̃_n of component m


def tape(bank: Bank, multivae: bool = False) -> list[Tensor]:
    """The draws in the order a library asks: mmgen every component's z, every w_m, then per n w̃_n of every
    component; MultiVae per source m its z, its w_m, then w̃_n of every other n."""
    if not multivae:
        return [bank["z"], bank["w"], *bank["aux"]]
    return [e for m in range(M) for e in (bank["z"][:, m], bank["w"][:, m],
                                          *(bank["aux"][n][:, m] for n in range(M) if n != m))]


def run(forward: Callable[[], object], draws: list[Tensor], grad: bool = False):
    """``forward()`` with ``Normal.rsample`` giving loc + scale·eps, eps the next of ``draws`` (shapes checked)."""
    queue = list(draws)

    def rsample(self: Normal, sample_shape=torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        if not queue or queue[0].shape != shape:
            raise RuntimeError(f"a draw of shape {tuple(shape)}, the tape has {queue[0].shape if queue else None}")
        return self.loc + self.scale * queue.pop(0)

    with mock.patch.object(Normal, "rsample", rsample), torch.set_grad_enabled(grad):
        out = forward()
    if queue:
        raise RuntimeError(f"{len(queue)} noise tensors left unused: fewer draws than expected")
    return out


def multivae_networks(api: SimpleNamespace, model) -> tuple[dict, dict]:
    """MultiVae encoders that split the mmgen expert [shared | private] of each modality, and decoders that call
    its decode: for MMVAE+ and DMVAE alike."""
    class Encoder(api.Encoder):
        def __init__(self, name: str, modality):
            super().__init__()
            self.key, self.modality, self.latent_dim, self.style_dim = name, modality, D, P

        def forward(self, x):
            mu, logvar = self.modality.encode(as_mmgen(self.key, x))  # (B, D + P): [shared | private]
            return api.ModelOutput(embedding=mu[..., :D], log_covariance=logvar[..., :D],
                                   style_embedding=mu[..., D:], style_log_covariance=logvar[..., D:])

    _, decoders, _ = plain_networks(api, model)  # each calls the mmgen modality's decode
    return {n: Encoder(n, m) for n, m in model.modalities.items()}, decoders


def build(api: SimpleNamespace, seed: int, objective: str = "iwae", K: int = 1, loss: str = "iwae_looser"):
    torch.manual_seed(seed)
    ours = MMVAEPlus(private_modalities(), MMVAEPlusConfig(latent_dim=D, private_dim=P, beta=BETA,
                                                           objective=objective, samples=K))
    encoders, decoders = multivae_networks(api, ours)
    config = api.models.MMVAEPlusConfig(n_modalities=M, latent_dim=D, modalities_specific_dim=P, K=K, beta=BETA,
                                        decoders_dist=dict(LIKELIHOODS), prior_and_posterior_dist="normal",
                                        loss=loss, learn_modality_prior=True)
    return ours, api.models.MMVAEPlus(config, encoders=encoders, decoders=decoders)


def shared_weights(ours: MMVAEPlus, theirs) -> list[Tensor]:
    """The parameter tensors both models hold (all but r_n's), after checking the rest are r_n's and p's."""
    a, b = {id(p): p for p in ours.parameters()}, {id(p): p for p in theirs.parameters()}
    own = {id(ours.aux_logits)} | {id(p) for p in [*theirs.mean_priors.values(), *theirs.logvars_priors.values()]}
    if (set(a) ^ set(b)) - own:
        raise RuntimeError("the two models hold different weights beyond r_n's and the prior's")
    return [p for k, p in a.items() if k in b]


# ---- terms -------------------------------------------------------------------------------------------------------
def mmgen_terms(model: MMVAEPlus, batch: dict, bank: Bank) -> Terms:
    out = run(lambda: model(batch), tape(bank))
    t = {k: float(v) for k, v in out.terms.items()}
    return {"loss": float(out.loss), "nll/image (self + cross)": t["nll/image"],
            "nll/label (self + cross)": t["nll/label"], "log q(z,w|·) − log p(z,w)": t["kl"]}


def multivae_terms(api: SimpleNamespace, model, data: dict, bank: Bank) -> Terms:
    """Its loss, then with β = 0 and one modality's rescale factor at 0 (the other's nll alone)."""
    def loss(beta: float, factors: dict) -> float:
        model.beta, model.rescale_factors = beta, factors
        return float(run(lambda: model(api.Dataset(data=data)), tape(bank, True)).loss)

    total = loss(BETA, {"image": 1, "label": 1})
    image, label = loss(0.0, {"image": 1, "label": 0}), loss(0.0, {"image": 0, "label": 1})
    model.beta, model.rescale_factors = BETA, {"image": 1, "label": 1}
    return {"loss": total, "nll/image (self + cross)": image, "nll/label (self + cross)": label,
            "log q(z,w|·) − log p(z,w)": (total - image - label) / BETA}


def per_example(ours: Callable, theirs: Callable, batch: dict, data: dict, bank: Bank) -> tuple[list, list]:
    """Each library's ``f(example, its noise)`` on every example alone (a batch of one): its terms, or its loss."""
    def one(f: Callable, x: dict, b: int):
        noise = {"z": bank["z"][:, :, b:b + 1], "w": bank["w"][:, :, b:b + 1], "aux": bank["aux"][..., b:b + 1, :]}
        out = f({n: v[b:b + 1] for n, v in x.items()}, noise)
        return out if isinstance(out, dict) else {"loss": float(out)}

    rows = range(len(batch["label"]))
    return [one(ours, batch, b) for b in rows], [one(theirs, data, b) for b in rows]


def losses(api: SimpleNamespace, ours, theirs, grad: bool = False) -> tuple[Callable, Callable]:
    """(batch, noise) -> each library's batch loss as a mean over the examples (MultiVae's sum divided by B)."""
    return (lambda x, e: run(lambda: ours(x).loss, tape(e), grad),
            lambda x, e: run(lambda: theirs(api.Dataset(data=x)).loss, tape(e, True), grad) / len(x["label"]))


def grad_gaps(api, ours, theirs, batch: dict, data: dict, bank: Bank) -> tuple[float, float, float]:
    """Max |Δ| of the batch mean's gradients over the shared weights, its largest entry, and max |Δ| over r_n:
    mmgen's ∂L/∂ρ against MultiVae's ∂L/∂lv carried to ρ (σ = exp(lv / 2) there, s·P·softmax(ρ) here)."""
    params, (mine, yours) = shared_weights(ours, theirs), losses(api, ours, theirs, grad=True)
    flat = []
    for loss in (lambda: mine(batch, bank), lambda: yours(data, bank)):
        grads = torch.autograd.grad(loss(), params, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]))
    rho, = torch.autograd.grad(mine(batch, bank), [ours.aux_logits])  # (M, P)
    lvs = [theirs.logvars_priors[n] for n in ours.names]
    g = 2 * torch.cat(torch.autograd.grad(yours(data, bank), lvs)) / torch.cat(lvs).detach().mul(0.5).exp()  # ∂L/∂σ
    p = ours.aux_logits.detach().softmax(-1)
    carried = ours.config.aux_scale * P * p * (g - (p * g).sum(-1, keepdim=True))  # ∂L/∂ρ
    return float((flat[0] - flat[1]).abs().max()), float(flat[0].abs().max()), float((rho - carried).abs().max())


@contextlib.contextmanager
def multivae_dreg():
    """mmgen's DReG given MultiVae's rules (Shi et al.'s MMVAE ``m_dreg``): every component of q(z | X) detached
    in log q(z | X), no responsibility term, and the encoder's path gradient weighted w̃ · w̃ whatever β."""
    from mmgen.plugin.posterior import detached

    def no_responsibility(draw):
        ones = draw.by_component.new_ones(draw.by_component.shape[:-1])
        return ones, torch.zeros_like(ones)

    factor = mock.Mock(side_effect=lambda w, beta, r=1.0: w)
    with (mock.patch("mmgen.model.bounds.stratified_log_q", lambda q, z: detached(q).log_prob(z)),
          mock.patch("mmgen.model.bounds.own_responsibility", no_responsibility),
          mock.patch("mmgen.model.bounds.dreg_encoder_factor", factor),
          mock.patch("mmgen_plugins.families.mmvaeplus.model.dreg_encoder_factor", factor)):
        yield


# ---- checks ------------------------------------------------------------------------------------------------------
def check_batch(api, ours, theirs, rows: tuple[list, list], batch: dict, data: dict, bank: Bank) -> None:
    B, (mine, yours) = len(rows[0]), losses(api, ours, theirs)
    whole_a, whole_b = float(mine(batch, bank)), float(yours(data, bank)) * B
    mean_a, sum_b = sum(r["loss"] for r in rows[0]) / B, sum(r["loss"] for r in rows[1])
    print(f"- the whole batch in one call: mmgen {whole_a:.9f} (its per-example mean minus it: "
          f"{mean_a - whole_a:.1e}), MultiVae {whole_b:.9f} = the SUM of its per-example losses (minus it: "
          f"{sum_b - whole_b:.1e}); MultiVae / B - mmgen: {whole_b / B - whole_a:.1e}")


def check_elbo(api, seed: int, theirs_rows: list, batch: dict, data: dict, bank: Bank) -> None:
    """mmgen's default ``elbo`` (the private KL in closed form) against MultiVae's iwae_looser at K = 1."""
    ours, _ = build(api, seed, "elbo")
    rows, _ = per_example(losses(api, ours, None)[0], lambda x, e: {}, batch, data, bank)
    with torch.no_grad():
        private = ours.private_experts(*ours.experts(batch))  # q(w_m | x_m), batch (M, B)
        w = private.mean + private.stddev * bank["w"][0]  # (M, B, P): the draws both libraries used
        sampled = private.log_prob(w) + 0.5 * (w.square() + torch.log(torch.tensor(2 * torch.pi))).sum(-1)
        predicted = BETA * (private.kl_to_standard_normal() - sampled).mean(0)  # (B,)
    gaps = torch.tensor([a["loss"] - b["loss"] for a, b in zip(rows, theirs_rows)])
    print(f"- mmgen objective 'elbo' (its default) against MultiVae's iwae_looser: max |Δ loss| "
          f"{float(gaps.abs().max()):.1e}; minus β·mean_m[KL(q(w_m|x_m)‖p) − (log q − log p)(w_m)], the closed "
          f"form against MultiVae's one-draw estimate: {float((gaps - predicted).abs().max()):.1e}")


def check_samples(api, seed: int, batch: dict, data: dict, K: int) -> None:
    """K draws: iwae against iwae_looser per example; dreg against dreg_looser, the batch-mean values and the
    gradients, as they are and with mmgen's DReG given MultiVae's rules."""
    bank = noise_bank(K, len(batch["label"]), seed)
    a, b = per_example(*losses(api, *build(api, seed, "iwae", K, "iwae_looser")), batch, data, bank)
    ours, theirs = build(api, seed, "dreg", K, "dreg_looser")
    mine, yours = losses(api, ours, theirs, grad=True)  # MultiVae's DReG hooks need autograd
    values = [mine(batch, bank).item(), yours(data, bank).item()]
    theirs.objective = "iwae_looser"
    iwae, theirs.objective = yours(data, bank).item(), "dreg_looser"
    print(f"- K = {K}: iwae against iwae_looser, max |Δ loss| per example {largest_gap(a, b):.1e}; dreg against "
          f"dreg_looser, batch-mean value mmgen {values[0]:.9f}, MultiVae {values[1]:.9f} (its iwae_looser on the "
          f"same draws: {iwae:.9f})")
    gap, size, aux = grad_gaps(api, ours, theirs, batch, data, bank)
    with multivae_dreg():
        same_rules, _, _ = grad_gaps(api, ours, theirs, batch, data, bank)
    print(f"- K = {K}, dreg against dreg_looser, gradients: max |Δ| {gap:.1e} over the shared weights (largest "
          f"entry {size:.2e}), {aux:.1e} over r_n; with mmgen's DReG given MultiVae's rules: {same_rules:.1e}")


def check_missing(api, ours, theirs, batch: dict, data: dict, bank: Bank) -> None:
    """Weak supervision: every third example lacks the label, every third the image."""
    k = torch.arange(len(batch["label"])) % 3
    present = {"image": k != 2, "label": k != 1}
    a = float(run(lambda: ours(batch, present=present).loss, tape(bank)))
    b = float(run(lambda: theirs(api.IncompleteDataset(data, present)).loss, tape(bank, True))) / len(k)
    print(f"- missing modalities (1/3 lack the label, 1/3 the image): batch-mean loss mmgen {a:.9f}, "
          f"MultiVae {b:.9f} (|Δ| {abs(a - b):.1e})")


def main() -> None:
    args = parse_args(__doc__, dtype=False)
    api = multivae_api()
    torch.set_default_dtype(torch.float64)
    batch, data, _ = fixed_batch(args.batch_size, args.seed)
    bank = noise_bank(1, args.batch_size, args.seed)
    ours, theirs = build(api, args.seed)
    fns = (lambda x, e: mmgen_terms(ours, x, e), lambda x, e: multivae_terms(api, theirs, x, e))
    rows = per_example(*fns, batch, data, bank)

    print(f"mmgen vs MultiVae {importlib.metadata.version('multivae')}, float64, B = {args.batch_size}, seed "
          f"{args.seed}: MMVAE+ objective 'iwae' vs MultiVae loss 'iwae_looser', K = 1, β = {BETA}, D = {D}, "
          f"P = {P}, Gaussian posteriors and priors; {len(shared_weights(ours, theirs))} weight tensors shared, "
          "the same noise in every draw.\n")
    print("| family | term (per example) | mmgen, mean | MultiVae, mean | max abs Δ | relative |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table("MMVAE+", *rows)))
    print("\nChecks:")
    check_batch(api, ours, theirs, rows, batch, data, bank)
    gap, size, aux = grad_gaps(api, ours, theirs, batch, data, bank)
    print(f"- K = 1, gradients of the batch mean: max |Δ| {gap:.1e} over the shared weights (largest entry "
          f"{size:.2e}), {aux:.1e} over r_n (its own parameters in each, carried through σ_n = 1)")
    check_elbo(api, args.seed, rows[1], batch, data, bank)
    for K in (1, 3):
        check_samples(api, args.seed, batch, data, K)
    check_missing(api, ours, theirs, batch, data, bank)


if __name__ == "__main__":
    main()
