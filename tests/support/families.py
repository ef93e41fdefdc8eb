"""Test data the model-family tests share: a latent width, tiny modality specs (an image, a label, a third
field), a seeded batch, log p(x_m | z) of one example written by hand (Bernoulli on grey values, categorical), a
family built from those specs, the overrides that shrink a shipped recipe for the CLI, and the CLI's eval check."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from mmgen.recipe import build_model, validate_recipe
from tests.support import RECIPES_DIR
from tests.support.three_fields import KIND as THREE_FIELDS

D = 3
SHAPE = [1, 3, 3]
SPECS = {
    "image": {"kind": "image", "weight": 2.0, "shape": SHAPE, "encoder_hidden": [6], "decoder_hidden": [6]},
    "label": {"kind": "label", "weight": 3.0, "num_classes": 10, "encoder_hidden": [6], "decoder_hidden": [6]},
    "tag": {"kind": "label", "weight": 0.5, "num_classes": 4, "encoder_hidden": [6], "decoder_hidden": [6]},
}


def make_batch(names=("image", "label"), B=6, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"image": torch.rand(B, *SHAPE, generator=g, dtype=torch.float64)}  # grey values in [0, 1]
    out |= {n: torch.randint(0, SPECS[n]["num_classes"], (B,), generator=g) for n in names if n != "image"}
    return {n: out[n] for n in names}


def log_p(model, name, z, x):
    """log p(x_m | z) of one example: Bernoulli on grey values for the image, categorical for a label."""
    params = model.modalities[name].decode(z[None])[0]
    if name == "image":
        return (x * F.logsigmoid(params) + (1 - x) * F.logsigmoid(-params)).sum()
    return F.log_softmax(params, -1)[x]


def weight(model, name):
    return model.modalities[name].config.weight


TINY_EVAL = ("-K", "5", "--limit", "20", "--per-class", "5", "--device", "cpu", "--no-pictures", "--probe-train", "20",
             "--json")


def scored_completely(cli, run) -> dict:
    """``mmgen eval`` of a tiny MNIST image+label run of any family: nothing skipped, the five likelihoods with
    their proposals, accuracy, coherence, FID (prior, mixture, given the label) and the probe. eval.json's dict."""
    result = cli("eval", run, *TINY_EVAL)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["skipped"] == {}
    estimates = {k: v for k, v in scores.items() if k.startswith("log p(")}
    assert len(estimates) == 5 and estimates["log p(image,label)"]["proposal"] == "q(z|image,label)"
    assert all(e["value"] is not None and e["value"] < 0 for e in estimates.values())
    fractions = {k: v for k, v in scores.items() if k.startswith(("accuracy", "coherence"))}
    assert {"accuracy image->label", "coherence label->image", "coherence joint"} <= set(fractions)
    fid = scores["fid"]  # FID of generated images, from the prior and the fitted mixture, and given the label
    assert {"prior", "gmm"} <= set(fid["unconditional"]) and fid["conditional per subset"]["image"]["label"] > 0
    assert 0 <= scores["latent probe per subset"]["image"] <= 1  # a linear probe on the posterior means
    return scores


def build_family(kind: str, names=("image", "label"), specs=SPECS, **model):
    """A family ``kind`` over the tiny ``specs`` of ``names`` (latent width D), built from a validated recipe in
    float64, so that a comparison with a hand-written loop is exact to ~1e-12. A recipe with "tag" needs the
    three-fields data set registered (``tests/families/conftest.py`` does for every family test)."""
    recipe = validate_recipe({
        "name": "t",
        "model": {"kind": kind, "latent_dim": D, **model},
        "modalities": {n: specs[n] for n in names},
        "data": {"kind": THREE_FIELDS if "tag" in names else "mnist"},
    })
    return build_model(recipe).double()


def tiny_overrides(recipe: str, root, *extra: str) -> list:
    """``recipes/<recipe>.toml`` with overrides that shrink it to tiny MLPs (image and label) and one short epoch
    on the tiny data at ``root``, offline, on the CPU; ``extra`` overrides follow."""
    nets = [f"modalities.{n}.{part}_hidden=[32]" for n in ("image", "label") for part in ("encoder", "decoder")]
    return [RECIPES_DIR / f"{recipe}.toml", f"data.root={root.as_posix()}", "data.download=false",
            "data.val_size=50", "train.epochs=1", "train.batch_size=50", "train.device=cpu", "model.latent_dim=8",
            *nets, *extra]
