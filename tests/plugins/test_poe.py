"""ProductOfExperts against the closed-form product of Gaussians, its masks, and its numerical range."""

import pytest
import torch

from mmgen import FusionConfig
from mmgen.model import DiagonalGaussian
from mmgen_plugins.poe import ProductOfExperts

D = 5


@pytest.fixture
def poe():
    return ProductOfExperts(FusionConfig(kind="poe"), latent_dim=D, num_modalities=2)


def closed_form(mu, logvar, use, prior=1.0):
    """Float64 reference: precisions add (the prior N(0, 1) contributes 1), the mean is precision-weighted."""
    mu, logvar = mu.double(), logvar.double()
    prec = torch.exp(-logvar) * use[..., None]  # (M, B, D); an unused expert has precision 0
    total = prior + prec.sum(0)
    return (prec * mu).sum(0) / total, -torch.log(total)


def test_two_experts_match_closed_form(poe):
    torch.manual_seed(0)
    mu, logvar = torch.randn(2, 7, D) * 3, torch.randn(2, 7, D) * 2  # (M, B, D)
    use = torch.ones(2, 7, dtype=torch.bool)
    q = poe(mu, logvar, use)
    ref_mu, ref_logvar = closed_form(mu, logvar, use)
    assert isinstance(q, DiagonalGaussian) and q.batch_shape == (7,) and q.event_shape == (D,)
    torch.testing.assert_close(q.mu.double(), ref_mu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.logvar.double(), ref_logvar, rtol=1e-5, atol=1e-5)
    # The distribution object must agree with its mu/logvar (the KL reads logvar, sampling reads scale).
    torch.testing.assert_close(q.variance, q.logvar.exp())


def test_mixed_masks_match_closed_form(poe):
    # Every combination of used experts in one batch: both, first only, second only, none.
    torch.manual_seed(1)
    mu, logvar = torch.randn(2, 4, D), torch.randn(2, 4, D)
    use = torch.tensor([[True, True, False, False], [True, False, True, False]])
    q = poe(mu, logvar, use)
    ref_mu, ref_logvar = closed_form(mu, logvar, use)
    torch.testing.assert_close(q.mu.double(), ref_mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.logvar.double(), ref_logvar, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("garbage", [0.0, 1e4, -1e4, 3e38, -3e38])
def test_unused_expert_contributes_nothing(poe, garbage):
    # Whatever finite values an absent modality's encoder emits, the result equals fusing without it.
    torch.manual_seed(2)
    mu, logvar = torch.randn(2, 3, D), torch.randn(2, 3, D)
    mu[1], logvar[1] = garbage, garbage
    with_garbage = poe(mu, logvar, torch.tensor([[True] * 3, [False] * 3]))
    alone = ProductOfExperts(FusionConfig(), D, 1)(mu[:1], logvar[:1], torch.ones(1, 3, dtype=torch.bool))
    assert torch.equal(with_garbage.mu, alone.mu)
    assert torch.equal(with_garbage.logvar, alone.logvar)


def test_unused_expert_gets_zero_gradient(poe):
    # Otherwise a missing modality's placeholder input would still train its encoder.
    mu = torch.randn(2, 3, D, requires_grad=True)
    logvar = torch.randn(2, 3, D, requires_grad=True)
    q = poe(mu, logvar, torch.tensor([[True] * 3, [True, False, True]]))
    (q.mu.sum() + q.logvar.sum()).backward()
    assert torch.all(mu.grad[1, 1] == 0) and torch.all(logvar.grad[1, 1] == 0)
    assert torch.all(mu.grad[1, 0] != 0)  # a used expert does get a gradient


def test_huge_unused_mean_leaves_gradients_finite(poe):
    # The forward result ignores the garbage (test above); the gradient of the used expert must too.
    torch.manual_seed(6)
    mu, logvar = torch.randn(2, 3, D), torch.randn(2, 3, D)
    mu[1, 1] = 3e38  # finite, but g * mu overflows for any upstream gradient g > 1.2
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    q = poe(mu, logvar, torch.tensor([[True] * 3, [True, False, True]]))
    (2 * q.mu.sum() + q.logvar.sum()).backward()
    assert torch.isfinite(mu.grad).all()
    assert torch.isfinite(logvar.grad).all()


def test_no_expert_gives_exactly_the_prior(poe):
    mu, logvar = torch.randn(2, 3, D) * 100, torch.randn(2, 3, D) * 100
    q = poe(mu, logvar, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(q.mu, torch.zeros(3, D))
    assert torch.equal(q.logvar, torch.zeros(3, D))


def test_broadcasting_experts_against_terms(poe):
    # The model fuses experts (M, 1, B, D) under a per-term mask (M, T, 1): one q per term.
    torch.manual_seed(3)
    mu, logvar = torch.randn(2, 4, D), torch.randn(2, 4, D)
    use = torch.tensor([[True, True, False], [True, False, True]])  # (M, T): joint, first, second
    q = poe(mu[:, None], logvar[:, None], use[:, :, None])
    assert q.batch_shape == (3, 4)
    for t in range(3):
        ref_mu, ref_logvar = closed_form(mu, logvar, use[:, t, None].expand(2, 4))
        torch.testing.assert_close(q.mu[t].double(), ref_mu, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(q.logvar[t].double(), ref_logvar, rtol=1e-5, atol=1e-6)


def test_joint_variance_never_exceeds_one(poe):
    # The prior expert bounds the joint variance by 1, even for very unconfident experts.
    torch.manual_seed(4)
    logvar = torch.randn(2, 64, D) * 50
    use = torch.rand(2, 64) < 0.6
    q = poe(torch.randn(2, 64, D), logvar, use)
    assert torch.all(q.logvar <= 0)


@pytest.mark.parametrize("extreme", [1e3, -1e3, 1e4, -1e4])
def test_extreme_logvars_stay_finite_with_finite_gradients(poe, extreme):
    # Training once went to NaN at lr 1e-3 when an expert's log-variance ran away; this is the guarantee.
    torch.manual_seed(5)
    mu = torch.randn(2, 6, D, requires_grad=True)
    logvar = torch.randn(2, 6, D)
    logvar[0] = extreme  # one expert runs away, the other stays reasonable
    logvar[1, :3] = extreme  # ... and for half the batch both do
    logvar.requires_grad_(True)
    use = torch.tensor([[True] * 6, [True, True, False, True, True, False]])
    q = poe(mu, logvar, use)
    z = q.rsample()
    kl = 0.5 * (q.logvar.exp() + q.mu.square() - 1 - q.logvar).sum(-1)
    log_q = q.log_prob(z)  # the sampled KL of a mixture fusion would need this
    (kl.sum() + log_q.sum() + z.square().sum()).backward()
    for t in (q.mu, q.logvar, z, kl, log_q, mu.grad, logvar.grad):
        assert torch.isfinite(t).all()
    assert torch.all(q.logvar <= 0)


def test_without_the_prior_expert_only_the_experts_multiply():
    from mmgen_plugins.poe import PoEConfig

    torch.manual_seed(3)
    mu, logvar = torch.randn(2, 4, D), torch.randn(2, 4, D)
    use = torch.tensor([[True, True, False, False], [True, False, True, False]])
    q = ProductOfExperts(PoEConfig(prior_expert=False), D, 2)(mu, logvar, use)
    ref_mu, ref_logvar = closed_form(mu[:, :3], logvar[:, :3], use[:, :3], prior=0.0)
    torch.testing.assert_close(q.mu[:3].double(), ref_mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.logvar[:3].double(), ref_logvar, rtol=1e-5, atol=1e-6)
    # One expert alone is returned as it is; no expert at all falls back to N(0, I).
    torch.testing.assert_close(q.mu[1], mu[0, 1])
    torch.testing.assert_close(q.logvar[2], logvar[1, 2])
    assert torch.equal(q.mu[3], torch.zeros(D)) and torch.equal(q.logvar[3], torch.zeros(D))


def test_a_bare_fusion_config_keeps_the_prior_expert():
    assert ProductOfExperts(FusionConfig(kind="poe"), D, 2).config.prior_expert is True


def test_a_subclass_keeps_its_own_config():
    from mmgen_plugins.poe import PoEConfig

    class TemperedConfig(PoEConfig):
        temperature: float = 1.0

    class Tempered(ProductOfExperts):
        Config = TemperedConfig

    assert Tempered(TemperedConfig(temperature=2.0), D, 2).config.temperature == 2.0
    assert isinstance(Tempered(FusionConfig(kind="poe"), D, 2).config, TemperedConfig)
