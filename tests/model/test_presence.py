"""Weak supervision: the paired-fraction masks, their effect on training, and evaluation-time drops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mmgen.model.presence import describe, evaluation_presence, training_presence
from tests.support.toy import make_batch, make_model


def test_paired_fraction_split_is_deterministic_with_the_right_proportions():
    names = ["image", "label", "text"]
    a = training_presence(names, 20000, 0.1, seed=3)
    b = training_presence(names, 20000, 0.1, seed=3)
    assert all(torch.equal(a[n], b[n]) for n in names)
    counts = describe(a, 20000)
    assert counts["paired"] == 2000  # exactly round(0.1 * N)
    unpaired = ~torch.stack(list(a.values())).all(0)
    kept = torch.stack([a[n][unpaired] for n in names]).sum(0)
    assert (kept == 1).all()  # every unpaired example keeps exactly one modality
    for n in names:  # ... drawn uniformly: about a third each
        assert abs(int(a[n][unpaired].sum()) / int(unpaired.sum()) - 1 / 3) < 0.02
    c = training_presence(names, 20000, 0.1, seed=4)
    assert not torch.equal(a["image"], c["image"])


def test_full_pairing_needs_no_masks():
    assert training_presence(["image", "label"], 100, 1.0, seed=0) is None
    assert evaluation_presence(["image", "label"], 100, {}, seed=0) is None


def test_evaluation_drops_exact_fractions_independently():
    masks = evaluation_presence(["image", "label"], 1000, {"label": 0.3}, seed=0)
    assert int((~masks["label"]).sum()) == 300 and bool(masks["image"].all())


def test_a_missing_modality_changes_no_gradient_of_the_other_terms():
    model = make_model()
    batch = make_batch(["image", "label"], 6)
    present = {"image": torch.ones(6, dtype=torch.bool), "label": torch.tensor([1, 1, 1, 0, 0, 0]).bool()}

    def grads(b):
        model.zero_grad()
        torch.manual_seed(0)
        model(b, present=present).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    before = grads(batch)
    scrambled = {k: v.clone() for k, v in batch.items()}
    scrambled["label"][3:] = (scrambled["label"][3:] + 5) % 10  # the absent labels change...
    after = grads(scrambled)
    for n in before:  # ... and nothing else does
        torch.testing.assert_close(after[n], before[n], rtol=0, atol=0, msg=n)


@pytest.mark.parametrize(("value", "message"), [(0, "greater than 0"), (1.5, "less than or equal to 1")])
def test_paired_fraction_outside_0_1_is_a_recipe_error(cli, cli_error, tiny_recipe, value, message):
    line = cli_error(cli("train", tiny_recipe, f"data.paired_fraction={value}"))
    assert "data.paired_fraction" in line and message in line


def test_missing_at_eval_names_known_modalities(cli, cli_error, tiny_recipe):
    line = cli_error(cli("train", tiny_recipe, "data.missing_at_eval={sound=0.5}"))
    assert "data.missing_at_eval" in line and "'sound'" in line


def test_weakly_supervised_run_records_its_pairing(cli, tiny_recipe, tmp_path):
    out = tmp_path / "weak"
    result = cli("train", tiny_recipe, "data.paired_fraction=0.2", "data.missing_at_eval={label=0.5}", "--out", out)
    assert result.exit_code == 0, result.output
    with safe_open(out / "pairing.safetensors", "pt") as f:
        meta = json.loads(f.metadata()["mmgen"])
        image, label = f.get_tensor("image").bool(), f.get_tensor("label").bool()
    assert meta["paired_fraction"] == 0.2 and meta["paired"] == int((image & label).sum())
    assert meta["paired"] == round(0.2 * meta["examples"])
    assert bool((image | label).all())
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    assert all(v == v for v in rows[0].values() if isinstance(v, float))  # finite, no NaN


def test_evaluation_leaves_out_what_an_example_lacks(cli, tiny_recipe, tmp_path):
    out = tmp_path / "drop"
    assert cli("train", tiny_recipe, "data.missing_at_eval={label=0.5}", "--out", out).exit_code == 0
    result = cli("eval", out, "-K", "2", "--no-pictures", "--json", "--per-class", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    n = report["examples"]
    assert report["missing"] == {"label": round(0.5 * n)}
    assert report["log p(image)"]["n"] == n  # every example has its image
    assert report["log p(label)"]["n"] == report["log p(image,label)"]["n"] == n - round(0.5 * n)
    assert report["log p(image|label)"]["n"] == n - round(0.5 * n)


def test_a_modality_missing_from_every_example_gives_no_number_not_a_crash(cli, tiny_recipe, tmp_path):
    out = tmp_path / "no-images"
    result = cli("train", tiny_recipe, "data.missing_at_eval={image=1.0}", "train.crossmodal_every=1", "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "val/accuracy image->label" not in rows[0]  # the probe had no image to read from
    assert "val/coherence label->image" in rows[0]  # ... but can still draw from a label
    result = cli("eval", out, "-K", "2", "--no-pictures", "--json", "--per-class", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy image->label"] is None
    assert report["log p(image)"] == {"value": None, "stderr": None, "proposal": "q(z|image)", "n": 0, "K": 2}
    assert report["log p(label)"]["n"] == report["examples"] and report["log p(label)"]["value"] < 0
    table = cli("eval", out, "-K", "2", "--no-pictures", "--per-class", "1")
    assert table.exit_code == 0, table.output
    assert "n/a" in table.stdout


def test_evaluation_presence_takes_any_recipe_seed():
    # data.pairing_seed may be any 64-bit seed; seed * 1000 once overflowed the generator's seed.
    small = evaluation_presence(["image", "label"], 50, {"label": 0.2}, seed=3)
    huge = evaluation_presence(["image", "label"], 50, {"label": 0.2}, seed=2**63 - 1)
    assert int((~huge["label"]).sum()) == 10 and bool(huge["image"].all())
    # A seed that fitted before draws what it drew before: label is modality 1, so seed 3 draws with 3001.
    dropped = torch.randperm(50, generator=torch.Generator().manual_seed(3 * 1000 + 1))[:10]
    assert sorted((~small["label"]).nonzero().flatten().tolist()) == sorted(dropped.tolist())
