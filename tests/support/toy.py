"""Tiny MNIST-shaped models and batches built through the registry, for tests of the model and its objectives."""

from __future__ import annotations

import torch

from mmgen.recipe import build_model, validate_recipe

D = 8
SHAPE = [1, 4, 4]  # tiny images keep the tests fast

IMAGE = {"kind": "image", "weight": 2.0, "shape": SHAPE, "encoder_hidden": [32], "decoder_hidden": [32]}
LABEL = {"kind": "label", "weight": 50.0, "num_classes": 10, "encoder_hidden": [32], "decoder_hidden": [32]}
TAG = {**LABEL, "weight": 3.0, "num_classes": 4}


def make_model(names=("image", "label"), subsets=0, data="mnist"):
    specs = {"image": IMAGE, "label": LABEL, "tag": TAG, "extra": TAG}
    recipe = validate_recipe(
        {
            "name": "test",
            "model": {"latent_dim": D, "subsets": subsets},
            "modalities": {n: specs[n] for n in names},
            "data": {"kind": data},
        }
    )
    return build_model(recipe)


def make_batch(names, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in names:
        if n == "image":
            out[n] = torch.rand(B, *SHAPE, generator=g)  # intensities in [0, 1]
        else:
            out[n] = torch.randint(0, 10 if n == "label" else 4, (B,), generator=g)
    return out
