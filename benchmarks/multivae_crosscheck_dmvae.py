"""Cross-check of the DMVAE family against MultiVae 1.0.3's DMVAE: same weights, batch and noise, float64, the
per-example loss and terms side by side (the method and scratch venv of ``multivae_crosscheck.py``; the noise tape
of ``multivae_crosscheck_mmvaeplus.py``). From the repository root (options ``--batch-size 6``, ``--seed 0``; a
difference is printed, never fatal):

    mkdir -p /tmp/mmgen-path && ln -sfn "$PWD/plugins" /tmp/mmgen-path/mmgen_plugins
    PYTHONPATH="$PWD:/tmp/mmgen-path" OMP_NUM_THREADS=1 /tmp/multivae-venv/bin/python \\
        benchmarks/multivae_crosscheck_dmvae.py

Model: ``multivae_crosscheck``'s image and label, a shared w of D = 3 and a private u_m of P = 2; MultiVae's encoders
split mmgen's expert [w | u_m] into ``embedding``/``log_covariance`` and ``style_embedding``/``style_log_covariance``;
its decoders call mmgen's. Common setting: β = 2.5 for every KL (MultiVae ``beta`` and ``modalities_specific_betas``),
rescale factors = λ = 1, ``modalities_specific_dim`` = P for both. Both sum, over the sources s ∈ {J, 1, ..., M} of
the shared latent (q_J the product of the experts with the prior expert, q_n = q(w|x_n) alone), λ-weighted
reconstructions of every modality from [w_s | u_m] less β times closed-form KLs, and take the batch mean.

Noise: mmgen draws one w_s per source and one u_m per modality, read by every term; MultiVae draws w_s, then u_m
afresh for every source. The tape (``Normal.rsample`` patched, count and shapes checked) feeds MultiVae the same u_m
for every source, so the formulas are compared draw for draw; one check gives MultiVae fresh u's, as it really draws.
MultiVae's terms: its loss with β, the private β's and one rescale factor at 0 (all linear).

Findings (seed 0): every term agrees to ~1e-15; the loss does not, for one reason, reproduced exactly:
* mmgen sums ELBO_ms over pairs (reconstructed m, source s), each with its own β KL(q_s(w)‖p(w)), so each shared
  KL counts once per reconstructed modality (M times); MultiVae sums one ELBO per source over all modalities, with
  the shared KL once. Δloss = β (M − 1) Σ_s KL(q_s‖p) (with missing modalities β (n − 1) Σ_s, n the modalities an
  example has); with MultiVae's ``beta`` set to M·β, loss and gradients agree. mmgen's count is the authors' code
  (seqam-lab/DMVAE, mnist_svhn/main.py ``elbo``: six ELBOs, each with the KL of [private_m, shared_s]) and
  multi-view-AE's reading of the paper's Eq. 3 (Lee & Pavlovic 2021); MultiVae's is its own.
* u_m drawn afresh in every term (MultiVae) or once (mmgen, as the authors' decoders, which read one draw): the same
  expectation, different draws; the check prints the gap on one set of draws and its mean over many.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from types import SimpleNamespace

import torch
from multivae_crosscheck import (
    LIKELIHOODS,
    Terms,
    fixed_batch,
    largest_gap,
    parse_args,
    same_tensors,
    table,
)
from multivae_crosscheck_mmvaeplus import BETA, D, M, P, multivae_api, multivae_networks, private_modalities, run
from torch import Tensor

from mmgen_plugins.families.dmvae import DMVAE, DMVAEConfig

# D, P, M, BETA: the MMVAE+ check's sizes (shared w of D, private u_m of P, M modalities, β), its networks too
S = M + 1  # sources of the shared latent: J, then each modality
NAMES = ("image", "label")
Bank = dict[str, Tensor]


# ---- the same networks and noise ---------------------------------------------------------------------------------
def noise_bank(B: int, seed: int) -> Bank:
    g = torch.Generator().manual_seed(seed + 1)
    return {"w": torch.randn(S, B, D, generator=g), "u": torch.randn(M, B, P, generator=g),
            "fresh": torch.randn(S, M, B, P, generator=g)}  # fresh[s, m]: u_m of source s's term


def tape(bank: Bank, multivae: bool = False, fresh: bool = False) -> list[Tensor]:
    """The draws in the order a library asks: mmgen every w_s, then every u_m; MultiVae per source its w_s, then
    u_m of every modality (the same u_m for every source, or with ``fresh`` a new one)."""
    if not multivae:
        return [bank["w"], bank["u"]]
    return [e for s in range(S) for e in (bank["w"][s], *(bank["fresh"][s] if fresh else bank["u"]))]


def build(api: SimpleNamespace, seed: int):
    torch.manual_seed(seed)
    ours = DMVAE(private_modalities(), DMVAEConfig(latent_dim=D, private_dim=P, beta=BETA))
    encoders, decoders = multivae_networks(api, ours)
    config = api.models.DMVAEConfig(n_modalities=M, latent_dim=D, decoders_dist=dict(LIKELIHOODS), beta=BETA,
                                    modalities_specific_dim=dict.fromkeys(NAMES, P),
                                    modalities_specific_betas=dict.fromkeys(NAMES, BETA))
    return ours, api.models.DMVAE(config, encoders=encoders, decoders=decoders)


# ---- terms -------------------------------------------------------------------------------------------------------
def mmgen_terms(model: DMVAE, batch: dict, bank: Bank) -> Terms:
    """mmgen's logged means, made sums: ``nll/m`` is over the S terms reconstructing m, ``kl`` over the S sources,
    ``kl/private`` over the M private latents (every example has every modality here)."""
    out = run(lambda: model(batch), tape(bank))
    t = {k: float(v) for k, v in out.terms.items()}
    return {"loss": float(out.loss), "Σ_s −log p(x_image | w_s, u_image)": S * t["nll/image"],
            "Σ_s −log p(x_label | w_s, u_label)": S * t["nll/label"], "Σ_s KL(q_s(w)‖p)": S * t["kl"],
            "Σ_m KL(q(u_m|x_m)‖p)": M * t["kl/private"]}


def multivae_loss(api: SimpleNamespace, model, data, draws: list[Tensor], beta: float = BETA,
                  private: float = BETA, factors: tuple = (1, 1), grad: bool = False) -> Tensor:
    """MultiVae's batch-mean loss with its shared ``beta``, private β's and rescale factors set for the call."""
    kept = model.beta, model.private_betas, model.rescale_factors
    model.beta, model.private_betas = beta, dict.fromkeys(NAMES, private)
    model.rescale_factors = dict(zip(NAMES, factors))
    try:
        dataset = data if isinstance(data, api.Dataset) else api.Dataset(data=data)
        return run(lambda: model(dataset).loss, draws, grad)
    finally:
        model.beta, model.private_betas, model.rescale_factors = kept


def multivae_terms(api: SimpleNamespace, model, data: dict, bank: Bank) -> Terms:
    def loss(*weights) -> float:
        return float(multivae_loss(api, model, data, tape(bank, True), *weights))

    return {"loss": loss(), "Σ_s −log p(x_image | w_s, u_image)": loss(0.0, 0.0, (1, 0)),
            "Σ_s −log p(x_label | w_s, u_label)": loss(0.0, 0.0, (0, 1)), "Σ_s KL(q_s(w)‖p)": loss(1.0, 0.0, (0, 0)),
            "Σ_m KL(q(u_m|x_m)‖p)": loss(0.0, 1.0, (0, 0)) / S}


def per_example(ours: Callable, theirs: Callable, batch: dict, data: dict, bank: Bank) -> tuple[list, list]:
    """Each library's ``f(example, its noise)`` on every example alone (a batch of one)."""
    def one(f: Callable, x: dict, b: int):
        return f({n: v[b:b + 1] for n, v in x.items()}, {k: v[..., b:b + 1, :] for k, v in bank.items()})

    rows = range(len(batch["label"]))
    return [one(ours, batch, b) for b in rows], [one(theirs, data, b) for b in rows]


# ---- checks ------------------------------------------------------------------------------------------------------
def check_batch(api, ours, theirs, rows: tuple[list, list], batch: dict, data: dict, bank: Bank) -> None:
    whole_a = float(run(lambda: ours(batch).loss, tape(bank)))
    whole_b = float(multivae_loss(api, theirs, data, tape(bank, True)))
    mean_a, mean_b = (sum(r["loss"] for r in side) / len(side) for side in rows)
    print(f"- the whole batch in one call: mmgen {whole_a:.9f}, MultiVae {whole_b:.9f}; each minus the mean of its "
          f"per-example losses: {whole_a - mean_a:.1e}, {whole_b - mean_b:.1e} (both take the batch mean)")


def check_kl_count(rows: tuple[list, list]) -> None:
    gaps = [a["loss"] - b["loss"] for a, b in zip(*rows)]
    predicted = [BETA * (M - 1) * b["Σ_s KL(q_s(w)‖p)"] for b in rows[1]]
    print(f"- the loss: max |Δ| {max(map(abs, gaps)):.1e} per example; minus β (M − 1) Σ_s KL(q_s(w)‖p), the "
          f"shared KLs mmgen counts once per reconstructed modality and MultiVae once: "
          f"{max(abs(g - p) for g, p in zip(gaps, predicted)):.1e}")


def check_matched(api, ours, theirs, batch: dict, data: dict, bank: Bank) -> None:
    """MultiVae with ``beta`` = M·β (each shared KL counted M times, as mmgen): the loss per example, and the
    gradients of the batch mean over every weight."""
    a, b = per_example(lambda x, e: {"loss": float(run(lambda: ours(x).loss, tape(e)))},
                       lambda x, e: {"loss": float(multivae_loss(api, theirs, x, tape(e, True), M * BETA))},
                       batch, data, bank)
    params = [p for p in ours.parameters() if p.requires_grad]
    flat = []
    for loss in (lambda: run(lambda: ours(batch).loss, tape(bank), grad=True),
                 lambda: multivae_loss(api, theirs, data, tape(bank, True), M * BETA, grad=True)):
        grads = torch.autograd.grad(loss(), params, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]))
    print(f"- MultiVae with beta = M·β = {M * BETA}: max |Δ loss| per example {largest_gap(a, b):.1e}; gradients of "
          f"the batch mean over the {same_tensors(ours, theirs)} shared weight tensors: max |Δ| "
          f"{float((flat[0] - flat[1]).abs().max()):.1e} (largest entry {float(flat[0].abs().max()):.2e})")


def check_fresh(api, ours, theirs, batch: dict, data: dict, seed: int, banks: int = 400) -> None:
    """MultiVae as it draws (u_m afresh in every term), beta = M·β: the gap on one set of draws, then its mean."""
    gaps = []
    for k in range(banks):
        bank = noise_bank(len(batch["label"]), seed + 1000 * k)
        mine = float(run(lambda: ours(batch).loss, tape(bank)))
        gaps.append(mine - float(multivae_loss(api, theirs, data, tape(bank, True, fresh=True), M * BETA)))
    gaps = torch.tensor(gaps)
    print(f"- MultiVae drawing u_m afresh in every term (beta = M·β): batch-mean |Δ loss| {abs(float(gaps[0])):.1e} "
          f"on seed {seed}'s draws; over {banks} sets of draws mean Δ {float(gaps.mean()):+.1e} ± "
          f"{float(gaps.std() / banks ** 0.5):.1e} (s.e.), spread {float(gaps.std()):.1e}: the same expectation")


def check_missing(api, ours, theirs, batch: dict, data: dict, bank: Bank) -> None:
    """Weak supervision: every third example lacks the label, every third the image; MultiVae at beta = β."""
    k = torch.arange(len(batch["label"])) % 3
    present = {"image": k != 2, "label": k != 1}
    a = float(run(lambda: ours(batch, present=present).loss, tape(bank)))
    b = float(multivae_loss(api, theirs, api.IncompleteDataset(data, present), tape(bank, True)))
    with torch.no_grad():
        mu, logvar = ours.experts(batch)
        use = ours.presence(batch, present)  # (M, B)
        kl = ours.sources(mu, logvar, use).kl_to_standard_normal()  # (S, B)
        has_source = torch.cat([use.any(0, keepdim=True), use])  # (S, B)
        predicted = BETA * (use.sum(0) - 1) * torch.where(has_source, kl, 0.0).sum(0)  # (B,)
    print(f"- missing modalities (1/3 lack the label, 1/3 the image): batch-mean |Δ loss| {abs(a - b):.1e}; minus "
          f"β (n − 1) Σ_s KL(q_s‖p), n the modalities an example has: {abs(a - b - float(predicted.mean())):.1e}")


def main() -> None:
    args = parse_args(__doc__, dtype=False)
    api = multivae_api()
    torch.set_default_dtype(torch.float64)
    batch, data, _ = fixed_batch(args.batch_size, args.seed)
    bank = noise_bank(args.batch_size, args.seed)
    ours, theirs = build(api, args.seed)
    rows = per_example(lambda x, e: mmgen_terms(ours, x, e), lambda x, e: multivae_terms(api, theirs, x, e),
                       batch, data, bank)

    print(f"mmgen vs MultiVae {importlib.metadata.version('multivae')}, float64, B = {args.batch_size}, seed "
          f"{args.seed}: DMVAE, β = {BETA} on every KL, D = {D}, P = {P}; {same_tensors(ours, theirs)} weight "
          "tensors shared, the same draws of w_s and u_m in both.\n")
    print("| family | term (per example) | mmgen, mean | MultiVae, mean | max abs Δ | relative |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table("DMVAE", *rows)))
    print("\nChecks:")
    check_batch(api, ours, theirs, rows, batch, data, bank)
    check_kl_count(rows)
    check_matched(api, ours, theirs, batch, data, bank)
    check_fresh(api, ours, theirs, batch, data, args.seed)
    check_missing(api, ours, theirs, batch, data, bank)


if __name__ == "__main__":
    main()
