"""Cross-check of the TELBO family against MultiVae 1.0.3's TELBO, a second implementation: the same weights, batch
and noise in both libraries; per stage the per-example loss and terms side by side, then the gradients.

Set up MultiVae's scratch venv and the PYTHONPATH symlink as ``multivae_crosscheck.py`` says, then from the root:

    PYTHONPATH="$PWD:/tmp/mmgen-path" OMP_NUM_THREADS=1 /tmp/multivae-venv/bin/python \
        benchmarks/multivae_crosscheck_telbo.py

Model and data are that script's (1x4x4 binary image, 5-class label, latent 3, float64), plus TELBO's joint encoder
wrapped as MultiVae's. MultiVae freezes its decoders with ``requires_grad_(False)`` inside forward, so its decoders
here register only the decoder's own parameters (``decoder_parameters``), never the wrapped modality's encoder.
λ = γ = 1 in MultiVae; λ = λ' = 1, β = 1 in mmgen (MultiVae's TELBO has no β). MultiVae picks the stage from the
1-based ``epoch`` forward kwarg (``epoch <= warmup``, warmup = 1 here: the joint ELBO; later: the unimodal ELBOs);
mmgen from ``model.stage``. Noise: each ``Normal.rsample`` pops the next eps of a fixed list (shapes checked, all
used): q(z|X) gets ``eps_joint`` (B, D); mmgen draws every q(z|x_m) at once, ``eps_uni`` (M, B, D); MultiVae's
unimodal stage draws q(z|X) (and decodes it, unused), then one (B, D) per modality, ``eps_uni[m]``.

Terms: the joint stage's nll and KL (MultiVae's ``recon_loss``, ``KLD``); per modality the unimodal −elbo
(MultiVae's metrics; mmgen's loss with the other modality marked absent) and KL (MultiVae's metrics at γ = 0;
mmgen's ``kl/m``); "triple": mmgen's whole L against the sum of MultiVae's stage losses. Checks: whole batch vs
per-example mean, the unimodal KL gap's cause, gradients and updated parameter groups per stage, freezing,
MultiVae's default likelihood rescaling, the epoch schedule. A difference is printed, never fatal.
Options: ``--dtype float32``, ``--batch-size 6``, ``--seed 0``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable
from types import SimpleNamespace
from unittest import mock

import multivae_crosscheck as base
import torch
from multivae_crosscheck import CLASSES, KINDS, LATENT, LIKELIHOODS, SHAPE, Terms  # the sibling script's helpers
from torch import Tensor
from torch.distributions import Normal

from mmgen_plugins.families.telbo import TELBO, TELBOConfig
from mmgen_plugins.image import BernoulliImage, ImageConfig
from mmgen_plugins.joint_encoder import decoder_parameters
from mmgen_plugins.label import CategoricalLabel, LabelConfig

WARMUP, STAGES = 1, ("joint", "unimodal", "triple")  # MultiVae's epoch 1 trains the joint stage, epoch 2 the other
ONES = {"image": 1.0, "label": 1.0}  # MultiVae's λ and γ, as mmgen's λ and λ'
PLAIN = {"uses_likelihood_rescaling": False, "lambda_factors": ONES, "gamma_factors": ONES}
INPUT_DIMS = {"image": SHAPE, "label": (CLASSES,)}  # what MultiVae's default rescaling reads (the label one-hot)
Noise = tuple[Tensor, Tensor]  # eps_joint (B, D), eps_uni (M, B, D)


def modalities(label_weight: float = 1.0) -> dict:
    """multivae_crosscheck's two modalities, the label's λ settable."""
    image = ImageConfig(kind="image", shape=SHAPE, encoder_hidden=[8], decoder_hidden=[8])
    label = LabelConfig(kind="label", num_classes=CLASSES, encoder_hidden=[8], decoder_hidden=[8], weight=label_weight)
    return {"image": BernoulliImage("image", image, LATENT), "label": CategoricalLabel("label", label, LATENT)}


def decoders_only(api: SimpleNamespace, model: TELBO) -> dict:
    """MultiVae decoders that call the modality's ``decode`` but register only its decoder parameters."""

    class Decoder(api.BaseDecoder):
        def __init__(self, modality):
            super().__init__()
            self.own = torch.nn.ParameterList(decoder_parameters(modality, "telbo"))  # the same tensors
            self.decode = modality.decode  # a bound method: the modality is not a submodule

        def forward(self, z):
            return api.ModelOutput(reconstruction=self.decode(z))

    return {n: Decoder(m) for n, m in model.modalities.items()}


def build_telbo(api: SimpleNamespace, seed: int, label_weight: float = 1.0, **options):
    torch.manual_seed(seed)
    config = TELBOConfig(latent_dim=LATENT, joint_features=4, joint_hidden=[8])
    ours = TELBO.create(modalities(label_weight), config, lambda category, kind: KINDS[kind])
    encoders, _, joint = base.multivae_networks(api, ours)
    mv_config = api.models.TELBOConfig(n_modalities=2, latent_dim=LATENT, decoders_dist=dict(LIKELIHOODS),
                                       **({"warmup": WARMUP} | (options or PLAIN)))
    theirs = api.models.TELBO(mv_config, encoders=encoders, decoders=decoders_only(api, ours), joint_encoder=joint)
    assert list(theirs.encoders) == ours.names, "the same modality order in both"
    return ours, theirs


@contextlib.contextmanager
def draws_from(queue: list[Tensor]):
    """Within it, each ``Normal.rsample()`` returns ``loc + scale * eps`` for the next eps of ``queue``."""
    left = list(queue)

    def rsample(self: Normal, sample_shape=torch.Size()) -> Tensor:
        if tuple(sample_shape) or not left or self.loc.shape != left[0].shape:
            raise RuntimeError(f"unexpected draw {tuple(self.loc.shape)}; next {[tuple(e.shape) for e in left]}")
        return self.loc + self.scale * left.pop(0)

    with mock.patch.object(Normal, "rsample", rsample):
        yield
    if left:
        raise RuntimeError(f"{len(left)} draws expected but not made")


@contextlib.contextmanager
def flags_kept(model: torch.nn.Module):
    """Every parameter's ``requires_grad`` as it was, afterwards (MultiVae's forward freezes for good)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def ours_out(model: TELBO, batch: dict, stage: str, noise: Noise, present: dict | None = None, grad=False):
    model.stage = stage
    queue = {"joint": [noise[0]], "unimodal": [noise[1]], "triple": list(noise)}[stage]
    with draws_from(queue), torch.set_grad_enabled(grad):
        return model(batch, present=present)


def theirs_out(api: SimpleNamespace, model, data: dict, stage: str, noise: Noise, grad=False):
    queue = [noise[0]] if stage == "joint" else [noise[0], *noise[1]]
    with draws_from(queue), torch.set_grad_enabled(grad):
        return model(api.Dataset(data=data), epoch=1 if stage == "joint" else WARMUP + 1)


def ours_terms(model: TELBO, batch: dict, noise: Noise) -> dict[str, Terms]:
    """mmgen's terms; a modality's unimodal −elbo is the unimodal loss with the other one marked absent."""
    B = noise[0].shape[0]
    j = ours_out(model, batch, "joint", noise)
    u = ours_out(model, batch, "unimodal", noise)
    alone = {m: float(ours_out(model, batch, "unimodal", noise,
                               present={o: torch.zeros(B, dtype=torch.bool) for o in model.names if o != m}).loss)
             for m in model.names}
    nll = sum(float(j.terms[f"nll/{m}"]) for m in model.names)
    return {"joint": {"loss": float(j.loss), "nll (both)": nll, "KL(q(z|X)‖p)": float(j.terms["kl"])},
            "unimodal": {"loss": float(u.loss)} | {f"−elbo({m})": alone[m] for m in model.names}
            | {f"KL(q(z|{m})‖p)": float(u.terms[f"kl/{m}"]) for m in model.names},
            "triple": {"loss": float(ours_out(model, batch, "triple", noise).loss)}}


def theirs_terms(api: SimpleNamespace, model, data: dict, noise: Noise) -> dict[str, Terms]:
    """MultiVae's terms: its metrics are sums over the batch, divided by B; its KLs are its metrics at γ = 0."""
    B = noise[0].shape[0]
    with flags_kept(model):
        j = theirs_out(api, model, data, "joint", noise)
        u = theirs_out(api, model, data, "unimodal", noise)
        gamma, model.gamma_factors = model.gamma_factors, dict.fromkeys(model.gamma_factors, 0.0)
        kl = theirs_out(api, model, data, "unimodal", noise).metrics
        model.gamma_factors = gamma
    joint = {"loss": float(j.loss), "nll (both)": float(j.recon_loss), "KL(q(z|X)‖p)": float(j.KLD)}
    unimodal = ({"loss": float(u.loss)} | {f"−elbo({m})": float(u.metrics[m]) / B for m in model.encoders}
                | {f"KL(q(z|{m})‖p)": float(kl[m]) / B for m in model.encoders})
    return {"joint": joint, "unimodal": unimodal, "triple": {"loss": joint["loss"] + unimodal["loss"]}}


def per_example(ours: Callable, theirs: Callable, batch: dict, data: dict, noise: Noise) -> tuple[list, list]:
    """Each library's terms on each example alone (a batch of one)."""
    cuts = [(slice(b, b + 1), (noise[0][b:b + 1], noise[1][:, b:b + 1])) for b in range(noise[0].shape[0])]
    return ([ours({n: x[s] for n, x in batch.items()}, e) for s, e in cuts],
            [theirs({n: x[s] for n, x in data.items()}, e) for s, e in cuts])


def kl_offset(model: TELBO, batch: dict) -> Tensor:
    """½ Σ_d (logvar of q(z|x_m) − logvar of q(z|X)) ``(M, B)``: MultiVae's unimodal KL minus the true one."""
    joint = model.joint_posterior(batch).logvar.detach()  # (B, D)
    return 0.5 * (model.unimodal_posteriors(batch).logvar - joint).sum(-1)


def groups(model: TELBO) -> dict[str, str]:
    """Parameter name -> its group: joint encoder, decoders or unimodal encoders."""
    dec = {id(p) for m in model.modalities.values() for p in decoder_parameters(m, "telbo")}
    return {n: "joint encoder" if n.startswith("joint.") else "decoders" if id(p) in dec else "unimodal encoders"
            for n, p in model.named_parameters()}


def stage_gradients(model: TELBO, loss: Callable[[], Tensor]) -> dict[str, Tensor]:
    """The gradient of ``loss()`` over the parameters still trainable after it ran, by name (none: left out)."""
    value = loss()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    return {n: g for (n, _), g in zip(named, grads) if g is not None}


def gap(a: dict[str, Tensor], b: dict[str, Tensor]) -> tuple[float, float]:
    """Largest |Δ| between two gradients (a missing one is 0) and the largest entry of ``a``."""
    worst = max(float((a.get(n, 0.0) - b.get(n, 0.0)).abs().max()) for n in a.keys() | b.keys())
    return worst, max(float(g.abs().max()) for g in a.values())


def check_gradients(api: SimpleNamespace, ours: TELBO, theirs, batch: dict, data: dict, noise: Noise) -> None:
    group = groups(ours)
    for stage in ("joint", "unimodal"):
        with flags_kept(ours):
            ours.enter_stage(stage)
            a = stage_gradients(ours, lambda s=stage: ours_out(ours, batch, s, noise, grad=True).loss)
        with flags_kept(ours):
            b = stage_gradients(ours, lambda s=stage: theirs_out(api, theirs, data, s, noise, grad=True).loss)
        worst, size = gap(a, b)
        print(f"- {stage} stage, gradients over every shared weight: max |Δ| {worst:.1e} (largest entry {size:.2e}); "
              f"updated: mmgen {sorted({group[n] for n in a})}, MultiVae {sorted({group[n] for n in b})}")
        if stage == "unimodal":
            with flags_kept(ours):
                ours.enter_stage(stage)
                c = stage_gradients(ours, lambda: ours_out(ours, batch, "unimodal", noise, grad=True).loss
                                    + kl_offset(ours, batch).sum() / noise[0].shape[0])
            print(f"- unimodal stage, mmgen's loss plus the KL offset above (½ Σ (logvar_m − logvar_joint) / B): "
                  f"gradient max |Δ| to MultiVae's {gap(c, b)[0]:.1e}")
    before, frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}, []  # + the branches' decoders
    with flags_kept(ours):
        for stage in ("unimodal", "joint"):
            theirs_out(api, theirs, data, stage, noise)
            frozen.append(sorted({group[n] for n, p in ours.named_parameters()
                                  if not p.requires_grad and n not in before}))
    print(f"- freezing: MultiVae's forward at a unimodal epoch itself sets requires_grad = False on {frozen[0]}, "
          f"for good (after a later joint-epoch call still: {frozen[1]}); mmgen's trainer calls enter_stage at the "
          "switch, which sets every flag")


def check_kl(ours: TELBO, a: list, b: list, batch: dict) -> None:
    with torch.no_grad():
        offset = kl_offset(ours, batch)  # (M, B)
    worst = max(abs(b[i]["unimodal"][f"KL(q(z|{n})‖p)"] - a[i]["unimodal"][f"KL(q(z|{n})‖p)"] - float(offset[m, i]))
                for m, n in enumerate(ours.names) for i in range(len(a)))
    print(f"- unimodal KL, MultiVae − mmgen against ½ Σ_d (logvar of q(z|x_m) − logvar of q(z|X)) per example: "
          f"max |Δ| {worst:.1e}; mmgen's KL(q(z|x_m)‖N(0,I)) is the paper's, MultiVae's reads the joint encoder's "
          f"log_var in its entropy term (telbo_model.py: `1 + log_var`, not `1 + mod_log_var`)")


def check_batches(fns: tuple, rows: tuple, batch: dict, data: dict, noise: Noise) -> None:
    whole = fns[0](batch, noise), fns[1](data, noise)
    for stage in STAGES:
        means = [sum(r[stage]["loss"] for r in side) / len(side) for side in rows]
        out = [w[stage]["loss"] for w in whole]
        print(f"- {stage}, the whole batch in one call: mmgen {out[0]:.9f}, MultiVae {out[1]:.9f}; each minus the "
              f"mean of its per-example losses: {out[0] - means[0]:.1e}, {out[1] - means[1]:.1e}")


def check_rescaling(api: SimpleNamespace, seed: int, batch: dict, data: dict, noise: Noise) -> None:
    """MultiVae's default factors (likelihood rescaling from input_dims) against mmgen given them as λ."""
    probe = build_telbo(api, seed, uses_likelihood_rescaling=True, input_dims=INPUT_DIMS)[1]
    factors = {k: float(v) for k, v in probe.lambda_factors.items()}
    ours, theirs = build_telbo(api, seed, factors["label"], uses_likelihood_rescaling=True, input_dims=INPUT_DIMS)
    plain = build_telbo(api, seed)[0]
    with flags_kept(ours), torch.no_grad():
        mv, mv_uni = (theirs_out(api, theirs, data, s, noise).loss for s in ("joint", "unimodal"))
        fix = kl_offset(ours, batch).sum() / noise[0].shape[0]
    joint = [abs(float(ours_out(m, batch, "joint", noise).loss - mv)) for m in (ours, plain)]
    uni = abs(float(ours_out(ours, batch, "unimodal", noise).loss + fix - mv_uni))
    print(f"- MultiVae's default factors (uses_likelihood_rescaling, input_dims {INPUT_DIMS}): λ = γ = {factors}; "
          f"joint loss |Δ| to mmgen with λ = λ' = those {joint[0]:.1e} (to mmgen at λ = 1: {joint[1]:.1e}); "
          f"unimodal loss, KL offset added to mmgen's: |Δ| {uni:.1e}")


def check_schedule(api: SimpleNamespace, seed: int, data: dict, epochs: int = 4) -> None:
    """Which stage each epoch trains: MultiVae at warmup = epochs / 2, mmgen at joint_share 0.5."""
    config = TELBOConfig(latent_dim=LATENT, joint_share=0.5)
    ours = [TELBO.training_stage(config, e, epochs) for e in range(epochs)]
    model = build_telbo(api, seed, **(PLAIN | {"warmup": epochs // 2}))[1]
    with torch.no_grad():
        theirs = ["joint" if "KLD" in model(api.Dataset(data=data), epoch=e) else "unimodal"
                  for e in range(1, epochs + 1)]
    print(f"- schedule over {epochs} epochs: mmgen (0-based, joint_share 0.5) {ours}; MultiVae (epoch 1..{epochs} "
          f"passed to forward, warmup {epochs // 2}) {theirs}; MultiVae's MultistageTrainer resets the optimizer and "
          f"its best-loss tracking at the start of epoch {model.reset_optimizer_epochs} (the last joint epoch); its "
          f"forward without epoch takes epoch = 1, the joint stage")


def main() -> None:
    args = base.parse_args(__doc__)
    api = base.multivae_api()
    torch.set_default_dtype(getattr(torch, args.dtype))
    batch, data, eps = base.fixed_batch(args.batch_size, args.seed)
    noise = (eps, torch.randn(2, *eps.shape, generator=torch.Generator().manual_seed(args.seed + 1)))

    ours, theirs = build_telbo(api, args.seed)
    fns = (lambda x, e: ours_terms(ours, x, e), lambda x, e: theirs_terms(api, theirs, x, e))
    a, b = per_example(*fns, batch, data, noise)
    print(f"mmgen vs MultiVae {importlib.metadata.version('multivae')} TELBO, {args.dtype}, B = {args.batch_size}, "
          f"seed {args.seed}; {base.same_tensors(ours, theirs)} parameter tensors shared by both; the same eps "
          "in every draw.\n")
    print("| stage | term (per example) | mmgen, mean | MultiVae, mean | max abs Δ | relative |")
    print("|---|---|---|---|---|---|")
    print("\n".join(line for s in STAGES for line in base.table(s, [r[s] for r in a], [r[s] for r in b])))

    print("\nChecks:")
    check_batches(fns, (a, b), batch, data, noise)
    check_kl(ours, a, b, batch)
    check_gradients(api, ours, theirs, batch, data, noise)
    check_rescaling(api, args.seed, batch, data, noise)
    check_schedule(api, args.seed, data)


if __name__ == "__main__":
    main()
