"""``train.best_by``: which validation number picks best.safetensors, in training and after --from-weights."""

import json

import pytest

from mmgen.storage import read_metadata
from mmgen.train.checkpoint import selection_score

NAMES = ["image", "label"]


def test_selection_score_minimizes_the_loss_or_minus_the_joint_elbo():
    row = {"val/loss": 200.0, "val/elbo(image,label)": -95.5, "val/elbo(image)": -94.0}
    assert selection_score(row, "loss", NAMES) == 200.0
    assert selection_score(row, "elbo", NAMES) == 95.5  # the ELBO of *all* modalities, not image's alone
    assert selection_score({"val/loss": True}, "loss", NAMES) is None
    assert selection_score({"val/loss": 1.0}, "elbo", NAMES) is None


def _check_best(out, best_by):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scores = [selection_score(r, best_by, NAMES) for r in rows]
    assert [r["best"] for r in rows] == [s < min(scores[:i], default=float("inf")) for i, s in enumerate(scores)]
    chosen = min(range(len(rows)), key=lambda i: (scores[i], i))
    assert int(read_metadata(out / "best.safetensors")["epoch"]) == rows[chosen]["epoch"]


@pytest.mark.parametrize("best_by", ["loss", "elbo"])
def test_best_weights_are_the_epoch_the_rule_picks(cli, tiny_recipe, tmp_path, best_by):
    out = tmp_path / "run"
    result = cli("train", tiny_recipe, "train.epochs=4", f"train.best_by={best_by}", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    _check_best(out, best_by)


def test_from_weights_keeps_the_rule(cli, tiny_recipe, tmp_path):
    # --from-weights rebuilds the best score from metrics.jsonl: by the recipe's rule, not by the loss.
    out = tmp_path / "run"
    first = cli("train", tiny_recipe, "train.epochs=3", "train.best_by=elbo", "--out", out, "--device", "cpu")
    assert first.exit_code == 0, first.output
    (out / "trainer_state.safetensors").unlink()
    result = cli("train", out, "--resume", "--from-weights", "train.epochs=6", "--device", "cpu")
    assert result.exit_code == 0, result.output
    _check_best(out, "elbo")
