"""IWAE log-likelihoods against a linear-Gaussian model whose marginals and posteriors are known exactly
(tests/support/linear_gaussian.py): with the exact posterior as proposal every weight equals p(x) and the
estimate is exact for every K; with a deliberately wrong encoder its bias and spread are known in closed form."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from mmgen.eval.likelihood import MAX_ELEMENTS, REST_FACTOR, Estimate, iwae_log_marginal, likelihood_report, rest_K
from tests.support.linear_gaussian import (
    SPECS,
    D,
    exact_log_marginal,
    exact_posterior,
    iwae_tolerance,
    kl_gauss,
    make_model,
    sample_data,
)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its importance samples from torch's global RNG, seeded here and restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


# ---- the known answer --------------------------------------------------------------------------


def test_reference_posterior_is_what_the_fusion_builds():
    """The premise of the exact tests: PoE(prior, exact experts) equals the textbook posterior."""
    model = make_model()
    data = sample_data(model, 5)
    for names in (["a"], ["b"], ["a", "b"]):
        q = model.posterior({n: data[n] for n in names})
        mean, var = exact_posterior(model, data, names)
        torch.testing.assert_close(q.mu, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(q.logvar.exp(), var.expand_as(mean), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K", [1, 7, 1000])
@pytest.mark.parametrize("names", [["a"], ["b"], ["a", "b"]])
def test_exact_posterior_gives_exact_marginal_for_every_K(names, K):
    # With q = p(z|x) every weight p(x|z)p(z)/q(z) is p(x): the estimate has no variance and no bias.
    model = make_model()
    data = sample_data(model, 20)
    est = iwae_log_marginal(model, data, names, K=K)
    assert est.shape == (20,) and est.dtype == torch.float64
    torch.testing.assert_close(est, exact_log_marginal(model, data, names), rtol=0, atol=1e-9)


def test_wrong_encoder_with_large_K_converges_to_the_exact_marginal():
    model = make_model(wrong=("a", "b"))
    data = sample_data(model, 20)
    names = ["a", "b"]
    K = 5000
    exact = exact_log_marginal(model, data, names)
    tol = iwae_tolerance(model, data, names, K)
    est = iwae_log_marginal(model, data, names, K=K)
    assert bool(((est - exact).abs() < tol).all()), (est - exact, tol)
    assert float(tol.max()) < 0.15  # and the check is tight: log p(x) to about a tenth of a nat
    assert bool((est != exact).all())  # the proposal really is wrong: this is not a disguised exact test


def test_wrong_encoder_with_K_1_is_lower_on_average_by_the_KL():
    # At K = 1 the estimate is log p(x|z) + log p(z) - log q(z) with z ~ q: the ELBO, whose mean is
    # log p(x) - KL(q || p(z|x)) exactly. 2000 draws put the sample mean within a few hundredths of that.
    model = make_model(wrong=("a",))
    data = sample_data(model, 2000)
    names = ["a"]
    diff = iwae_log_marginal(model, data, names, K=1) - exact_log_marginal(model, data, names)  # (B,)
    q = model.posterior({"a": data["a"]})
    mean, var = exact_posterior(model, data, names)
    kl = kl_gauss(q.mu, q.logvar.exp(), mean, var)  # (B,)
    stderr = float(diff.std() / math.sqrt(len(diff)))
    assert float(diff.mean()) + 4 * stderr < 0  # a lower bound in expectation, by a clear margin
    assert abs(float(diff.mean() + kl.mean())) < 4 * stderr  # and below by exactly the mean KL
    assert bool((diff < 1e-9).any()) and bool((diff > 1e-9).any())  # a bound on average, not per draw


def test_estimate_improves_with_K():
    # 500 examples, each scored 10 times, at K = 1, 10, 100 with the wrong encoder. The expected gaps to
    # log p(x) are -KL ≈ -0.56 (K = 1) and ≈ -χ²/(2K) ≈ -0.03, -0.003 (K = 10, 100; χ² ≈ 0.65 on average):
    # a strictly increasing sequence. The paired differences of the means must be positive by 3 standard
    # errors (a false failure has p ≈ 0.001 each); with 5000 rows the 10 -> 100 step is about 7 of them.
    model = make_model(wrong=("a", "b"))
    data = {n: v.repeat(10, 1) for n, v in sample_data(model, 500).items()}  # (5000, size)
    names = ["a", "b"]
    exact = exact_log_marginal(model, data, names)
    gap = {K: iwae_log_marginal(model, data, names, K=K) - exact for K in (1, 10, 100)}
    for small, large in ((1, 10), (10, 100)):
        d = gap[large] - gap[small]
        assert float(d.mean()) > 3 * float(d.std() / math.sqrt(len(d))), (small, large, float(d.mean()))
    # Even at K = 100 the estimate stays a lower bound in expectation (its mean gap is ≈ -χ²/200 < 0).
    assert float(gap[100].mean()) < 3 * float(gap[100].std() / math.sqrt(len(exact)))


# ---- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("max_elements", [1, 2 * 5 * 3, 3 * 5 * 3])
def test_chunking_does_not_change_the_estimates(max_elements):
    # K * (largest event) = 5 * 3 (modality a has 3 numbers): chunks of 1, 2 and 3 of the 7 examples, so the
    # last chunk is short. The exact model makes every estimate deterministic, so equality is exact.
    model = make_model()
    data = sample_data(model, 7)
    for names in (["a"], ["a", "b"]):
        whole = iwae_log_marginal(model, data, names, K=5)
        chunked = iwae_log_marginal(model, data, names, K=5, max_elements=max_elements)
        assert chunked.shape == (7,)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-10)
        torch.testing.assert_close(chunked, exact_log_marginal(model, data, names), rtol=0, atol=1e-9)


def test_chunking_keeps_each_example_with_its_own_proposal():
    # With a wrong encoder each estimate is random but within its tolerance of its own log p(x); chunks of one
    # example whose proposals were misaligned with their targets would miss that.
    model = make_model(wrong=("a",))
    data = sample_data(model, 6)
    exact = exact_log_marginal(model, data, ["a"])
    tol = iwae_tolerance(model, data, ["a"], 2000)
    chunked = iwae_log_marginal(model, data, ["a"], K=2000, max_elements=1)
    assert bool(((chunked - exact).abs() < tol).all())
    assert not bool(((chunked - exact.roll(1)).abs() < tol).all())  # the check can tell examples apart


def test_chunks_are_sized_by_the_widest_layer_not_only_the_event(monkeypatch):
    # A label's event is one number but its decoder's activations are hundreds wide: a chunk must
    # count those, or K * examples * width floats are held at once.
    model = make_model()
    model.modalities["b"].hidden = torch.nn.Linear(D, 64)  # a 64-wide layer in b's modality
    data = sample_data(model, 7)
    sizes = []
    posterior = model.posterior

    def recording(inputs):
        sizes.append(next(iter(inputs.values())).shape[0])
        return posterior(inputs)

    monkeypatch.setattr(model, "posterior", recording)
    iwae_log_marginal(model, data, ["b"], K=5, max_elements=5 * 64 * 2)
    assert sizes == [2, 2, 2, 1]  # 64 wide, not the event's 2: two examples per chunk
    sizes.clear()
    iwae_log_marginal(model, data, ["a"], K=5, max_elements=5 * 64 * 2)
    assert sizes == [7]  # a has no parameters: its event of 3 sets the chunk


# ---- the report -------------------------------------------------------------------------------


def test_report_keys_values_and_proposals_with_the_exact_posterior():
    model = make_model()
    data = sample_data(model, 11)
    # batch_size 4 splits 11 examples 4 + 4 + 3: batching must not change anything either.
    report = likelihood_report(model, data, K=3, batch_size=4)
    assert list(report) == ["log p(a)", "log p(b)", "log p(a,b)", "log p(a|b)", "log p(b|a)"]
    exact = {key: exact_log_marginal(model, data, key.split(",")) for key in ("a", "b", "a,b")}
    exact["a|b"] = exact["a,b"] - exact["b"]
    exact["b|a"] = exact["a,b"] - exact["a"]
    proposals = {
        "a": "q(z|a)",
        "b": "q(z|b)",
        "a,b": "q(z|a,b)",
        "a|b": "q(z|a,b) - q(z|b)",
        "b|a": "q(z|a,b) - q(z|a)",
    }
    # Each single modality is the rest of the other's conditional: the linear-Gaussian modalities have no
    # parameters, so each counts as one unit of work, and log p(rest) gets the joint's 2 units: K = 2 * 3.
    ks = {"a": 6, "b": 6, "a,b": 3, "a|b": 3, "b|a": 3}
    for key, per_example in exact.items():
        est = report[f"log p({key})"]
        assert isinstance(est, Estimate)
        assert est.n == 11
        assert est.proposal == proposals[key]
        assert ks[key] == est.K
        assert est.value == pytest.approx(float(per_example.mean()), abs=1e-9)
        # The standard error of the conditional is that of the per-example differences (sample std / sqrt n),
        # not a combination of the two marginals' errors: the per-example pairing is kept.
        assert est.stderr == pytest.approx(float(per_example.std() / math.sqrt(11)), rel=1e-9)
        plain = {"value": est.value, "stderr": est.stderr, "proposal": est.proposal, "n": 11, "K": ks[key]}
        if "|" in key:
            plain.update({"K rest": 6, "note": est.note})
            assert "not a bound" in est.note and "K=3" in est.note and "K=6" in est.note
        assert est.to_dict() == plain
    # The conditionals are genuinely different from the marginals (a check that could not pass by accident).
    assert report["log p(a|b)"].value > report["log p(a)"].value + 0.1


def test_report_conditional_is_the_per_example_difference_under_the_same_seed():
    # With a wrong encoder every estimate is random; the report must equal the per-example recomputation
    # from iwae_log_marginal drawing the same random numbers in the same order (per batch: a, b, (a, b)).
    model = make_model(wrong=("a", "b"))
    data = sample_data(model, 9)
    torch.manual_seed(7)
    report = likelihood_report(model, data, K=50, batch_size=5)
    torch.manual_seed(7)
    per = {"a": [], "b": [], "a,b": []}
    ks = {"a": 100, "b": 100, "a,b": 50}  # each single modality is a rest: the automatic K_rest (see above)
    for start in (0, 5):
        batch = {n: v[start : start + 5] for n, v in data.items()}
        for key in per:
            per[key].append(iwae_log_marginal(model, batch, key.split(","), K=ks[key]))
    est = {key: torch.cat(v) for key, v in per.items()}
    expected = {
        "log p(a)": est["a"],
        "log p(b)": est["b"],
        "log p(a,b)": est["a,b"],
        "log p(a|b)": est["a,b"] - est["b"],
        "log p(b|a)": est["a,b"] - est["a"],
    }
    for key, per_example in expected.items():
        assert report[key].value == pytest.approx(float(per_example.mean()), abs=1e-12), key
        assert report[key].stderr == pytest.approx(float(per_example.std() / 3.0), rel=1e-9), key
    # Random, yet close to the truth: a sanity check that the recomputation is not trivially equal.
    exact = exact_log_marginal(model, data, ["a", "b"]) - exact_log_marginal(model, data, ["b"])
    assert report["log p(a|b)"].value != pytest.approx(float(exact.mean()), abs=1e-6)
    assert report["log p(a|b)"].value == pytest.approx(float(exact.mean()), abs=0.2)


def test_report_with_a_fixed_proposal_uses_it_for_every_estimate():
    # proposal=["a"]: q(z|a) is the exact posterior for log p(a) only. Under it log p(a) stays exact, while
    # log p(b) and log p(a,b) become random (under q(z|b) and q(z|a,b) they would be exact): that separates
    # "used q(z|a)" from "used the default proposal" numerically, beyond the labels.
    model = make_model()
    data = sample_data(model, 9)
    torch.manual_seed(3)
    report = likelihood_report(model, data, K=20, proposal=["a"], K_rest=30)
    for key in ("log p(a)", "log p(b)", "log p(a,b)"):
        assert report[key].proposal == "q(z|a)"
    assert report["log p(a|b)"].proposal == "q(z|a) - q(z|a)"
    assert report["log p(b|a)"].proposal == "q(z|a) - q(z|a)"
    exact = {key: exact_log_marginal(model, data, key.split(",")) for key in ("a", "b", "a,b")}
    assert report["log p(a)"].value == pytest.approx(float(exact["a"].mean()), abs=1e-9)
    for key in ("b", "a,b"):  # random: a mean of 9 random numbers cannot land within 1e-6 by chance
        assert report[f"log p({key})"].value != pytest.approx(float(exact[key].mean()), abs=1e-6)
    # And the numbers are iwae_log_marginal's with proposal ["a"], drawn in the same order.
    torch.manual_seed(3)
    ks = {"a": 30, "b": 30, "a,b": 20}
    est = {key: iwae_log_marginal(model, data, key.split(","), proposal=["a"], K=ks[key]) for key in ("a", "b", "a,b")}
    for key in ("a", "b", "a,b"):
        assert report[f"log p({key})"].value == pytest.approx(float(est[key].mean()), abs=1e-12)
    assert report["log p(a|b)"].value == pytest.approx(float((est["a,b"] - est["b"]).mean()), abs=1e-12)
    assert report["log p(b|a)"].stderr == pytest.approx(float((est["a,b"] - est["a"]).std() / 3.0), rel=1e-9)


def test_report_with_one_modality_has_only_its_marginal():
    model = make_model(names=("a",))
    data = sample_data(model, 4)
    report = likelihood_report(model, data, K=2)
    assert list(report) == ["log p(a)"]
    assert report["log p(a)"].value == pytest.approx(float(exact_log_marginal(model, data, ["a"]).mean()), abs=1e-9)


def test_estimate_of_one_example_has_no_stderr():
    est = Estimate.of(torch.tensor([1.5]), "q(z|a)", K=4)
    assert est.value == 1.5 and est.n == 1 and est.stderr is None  # JSON has no NaN
    assert est.to_dict() == {"value": 1.5, "stderr": None, "proposal": "q(z|a)", "n": 1, "K": 4}


def test_estimate_of_no_example_has_no_value():
    est = Estimate.of(torch.tensor([]), "q(z|a)", K=4)
    assert est.value is None and est.stderr is None and est.n == 0  # not NaN, which JSON cannot hold


def test_report_with_three_modalities_has_each_conditional_given_the_rest(monkeypatch):
    monkeypatch.setitem(SPECS, "c", (2, [1.0, 1.2], 0.6))
    model = make_model(names=("a", "b", "c"))
    data = sample_data(model, 5)
    report = likelihood_report(model, data, K=2)
    exact = exact_log_marginal(model, data, ["a", "b", "c"]) - exact_log_marginal(model, data, ["b", "c"])
    assert report["log p(a|b,c)"].value == pytest.approx(float(exact.mean()), abs=1e-9)


# ---- the conditioning set's K ------------------------------------------------------------------


def test_the_conditionals_use_K_rest_for_the_rest_and_record_both():
    # The report equals the recomputation that draws K = 3 for the joint and K = 40 for each single modality (each is
    # the rest of the other's conditional), in the same order; with K = 3 for the rests it would not.
    model = make_model(wrong=("a", "b"))
    data = sample_data(model, 9)
    torch.manual_seed(7)
    report = likelihood_report(model, data, K=3, K_rest=40)
    torch.manual_seed(7)
    est = {key: iwae_log_marginal(model, data, key.split(","), K=k) for key, k in (("a", 40), ("b", 40), ("a,b", 3))}
    assert report["log p(a|b)"].value == pytest.approx(float((est["a,b"] - est["b"]).mean()), abs=1e-12)
    assert report["log p(b|a)"].value == pytest.approx(float((est["a,b"] - est["a"]).mean()), abs=1e-12)
    assert (report["log p(a)"].K, report["log p(b)"].K, report["log p(a,b)"].K) == (40, 40, 3)
    torch.manual_seed(7)
    small = likelihood_report(model, data, K=3, K_rest=3)
    assert small["log p(a|b)"].value != pytest.approx(report["log p(a|b)"].value, abs=1e-6)
    shown = report["log p(a|b)"].to_dict()
    assert (shown["K"], shown["K rest"]) == (3, 40)
    assert shown["note"].endswith("log p(a,b) used K=3, log p(b) K=40") and "an estimate, not a bound" in shown["note"]


def test_a_loose_rest_inflates_the_conditional_and_a_larger_K_rest_removes_most_of_it():
    # The paper's proposal q(z|a) for every estimate is a poor one for log p(b): at K = 10 that estimate is far
    # below log p(b), and log p(a|b) = log p(a,b) - log p(b) lands about 0.75 nats above the exact value. With
    # K_rest = 1000 the excess falls to about 0.19 (standard errors about 0.02 and 0.01 over 4000 examples).
    model = make_model()
    data = sample_data(model, 4000)
    exact = float((exact_log_marginal(model, data, ["a", "b"]) - exact_log_marginal(model, data, ["b"])).mean())
    excess = {}
    for k_rest in (10, 1000):
        report = likelihood_report(model, data, K=10, proposal=["a"], K_rest=k_rest)
        assert (report["log p(b)"].K, report["log p(a|b)"].K_rest) == (k_rest, k_rest)
        excess[k_rest] = report["log p(a|b)"].value - exact
    assert excess[10] > 0.5  # inflated: not a lower bound
    assert abs(excess[1000]) < excess[10] - 0.4  # much closer to the truth


def test_the_automatic_K_rest_is_larger_for_a_cheap_rest_and_never_below_K():
    model = make_model()
    data = sample_data(model, 3)
    assert rest_K(model, data, ["b"], 7) == 14  # no parameters: one unit each, the joint's work is two
    model.modalities["a"].hidden = torch.nn.Linear(D, 100)  # a costs 300 units now, b one
    assert rest_K(model, data, ["b"], 7) == REST_FACTOR * 7  # cheap: the full factor
    assert rest_K(model, data, ["a"], 7) == 7  # the expensive rest stays at K
    # b's event is 2 wide: one example may hold 2**25 / 2 samples of it in a chunk, so K_rest stops there,
    # and K itself is kept when it is already past that.
    assert rest_K(model, data, ["b"], 2**22) == MAX_ELEMENTS // 2 == 2**24
    assert rest_K(model, data, ["b"], 2**25) == 2**25


def test_mmgen_eval_records_each_K_and_says_a_conditional_is_no_bound(cli, trained_run, tmp_path):
    out = Path(shutil.copytree(trained_run, tmp_path / "run"))
    fast = ("-K", "3", "--limit", "20", "--per-class", "2", "--no-pictures")
    result = cli("eval", out, *fast)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["K"] == 3 and report["log p(image,label)"]["K"] == 3
    assert report["log p(label)"]["K"] == REST_FACTOR * 3  # a label is cheap to decode: the full factor
    assert report["log p(image)"]["K"] < 2 * 3  # the image costs about what the joint does
    for key, rest in (("log p(image|label)", "label"), ("log p(label|image)", "image")):
        assert report[key]["K"] == 3 and report[key]["K rest"] == report[f"log p({rest})"]["K"]
        assert "an estimate, not a bound" in report[key]["note"]
    assert "an estimate, not a bound" in " ".join(result.stdout.split())
    result = cli("eval", out, *fast, "--K-rest", "7", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["K rest"] == 7 and report["log p(image)"]["K"] == report["log p(label)"]["K"] == 7
    assert report["log p(image|label)"]["K rest"] == 7 and report["log p(image|label)"]["note"].endswith("K=7")
