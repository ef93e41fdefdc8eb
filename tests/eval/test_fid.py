"""FID: torchmetrics' Fréchet distance in a feature network's features, checked against closed forms computed
here (population moments, scipy's matrix square root, a set of identical images), the judge's and
Inception-v3's features, and ``fid_report``'s unconditional and conditional tables."""

from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from torchvision.transforms.functional import gaussian_blur

from mmgen.errors import MmgenError
from mmgen.eval.features import INCEPTION_FILE, inception_features, judge_features, rgb_pixels
from mmgen.eval.fid import FrechetReference, fid_report, frechet_distance
from mmgen.eval.judge import train_classifier
from tests.plugins.test_mvae_family import toy_dataset  # noqa: F401 (the fixture registering the toy4 data set)
from tests.support.toy import D, make_batch, make_model


class Flat:
    """The identity as a feature network: ``(N, C, H, W)`` (or ``(N, K)``) -> ``(N, C*H*W)``."""

    name = "the pixels themselves"

    def __init__(self, num_features: int):
        self.num_features = num_features

    def __call__(self, images):
        return images.flatten(1)


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of two sets of feature rows ``(N, F)``, with scipy's general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


# ---- the distance --------------------------------------------------------------------------------------
def test_the_distance_of_two_gaussians_is_the_closed_form():
    n = 100_000
    mu_1, var_1 = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 4.0, 0.25])
    mu_2, var_2 = torch.tensor([1.0, -0.5, 0.0]), torch.tensor([2.0, 1.0, 1.0])
    g = torch.Generator().manual_seed(0)
    a = (mu_1 + var_1.sqrt() * torch.randn(n, 3, generator=g)).double()  # (n, 3)
    b = (mu_2 + var_2.sqrt() * torch.randn(n, 3, generator=g)).double()
    fid = frechet_distance(a.view(n, 3, 1, 1), b.view(n, 3, 1, 1), Flat(3))
    # Diagonal covariances commute: (S1 S2)^(1/2) is elementwise, the trace term sum (sd_1 - sd_2)^2.
    closed = float((mu_1 - mu_2).square().sum() + (var_1.sqrt() - var_2.sqrt()).square().sum())  # 2.67
    # First-order error: 2 dmu . (mean errors) with var 4 sum dmu^2 (v1 + v2) / n, and 2 (sd1 - sd2) (sd errors)
    # with var 4 sum (sd1 - sd2)^2 (v1 + v2) / (2n); bias of order sum (v1 + v2) / n. Five sd plus the bias: 0.10.
    sd = math.sqrt(float(4 * ((mu_1 - mu_2).square() * (var_1 + var_2)).sum() / n
                         + 2 * ((var_1.sqrt() - var_2.sqrt()).square() * (var_1 + var_2)).sum() / n))
    assert fid == pytest.approx(closed, abs=5 * sd + float((var_1 + var_2).sum()) / n)
    # Exactly (float64 all the way) the distance of the samples' own moments.
    assert fid == pytest.approx(scipy_fid(a.numpy(), b.numpy()), rel=1e-9)


def test_correlated_features_match_scipy_and_a_set_is_at_distance_0_of_itself():
    g = torch.Generator().manual_seed(1)
    mixing = torch.randn(5, 5, generator=g)
    a = torch.randn(400, 5, generator=g) @ mixing  # correlated, non-commuting covariances
    b = torch.randn(300, 5, generator=g) @ mixing.T + 0.3
    assert frechet_distance(a.view(-1, 5, 1, 1), b.view(-1, 5, 1, 1), Flat(5), batch_size=64) == pytest.approx(
        scipy_fid(a.double().numpy(), b.double().numpy()), rel=1e-9)  # float32 features, a float64 distance
    assert abs(frechet_distance(a.view(-1, 5, 1, 1), a.view(-1, 5, 1, 1), Flat(5))) < 1e-9


def test_a_reference_forgets_each_generated_set():
    g = torch.Generator().manual_seed(2)
    real, near, far = torch.randn(50, 4, 1, 1, generator=g), torch.randn(50, 4, 1, 1, generator=g), \
        3 + torch.randn(50, 4, 1, 1, generator=g)
    reference = FrechetReference(real, Flat(4))
    reference.add(near)
    first = reference.distance()
    reference.add(far)
    reference.distance()
    reference.add(near[:20])  # in two batches: the same set
    reference.add(near[20:])
    assert reference.distance() == pytest.approx(first, rel=1e-12)


def test_fewer_than_two_images_are_refused_in_one_line():
    with pytest.raises(MmgenError, match="at least 2 generated images") as caught:
        frechet_distance(torch.rand(10, 2, 1, 1), torch.rand(1, 2, 1, 1), Flat(2))
    assert "\n" not in str(caught.value)


# ---- a judge's features: halves of one set, and blurred images --------------------------------------------
SIDE = 16


def pattern_images(n: int, seed: int):
    """``(n, 1, 16, 16)`` images of 4 classes (horizontal, vertical, diagonal stripes, a checkerboard, each
    of period 4 at a random phase) with pixel noise, and their classes ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    phase = torch.randint(0, 4, (n, 1, 1), generator=g)
    rows, cols = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")  # (16, 16) each
    patterns = torch.stack([(rows + phase) % 4 < 2, (cols + phase) % 4 < 2, (rows + cols + phase) % 4 < 2,
                            (rows // 2 + cols // 2 + phase) % 2 == 0], 1).float()  # (n, 4, 16, 16)
    images = patterns[torch.arange(n), labels].unsqueeze(1)  # (n, 1, 16, 16)
    return (images + 0.15 * torch.randn(images.shape, generator=g)).clamp(0, 1), labels


def test_halves_of_a_set_are_about_0_apart_and_blur_moves_them_apart_monotonically():
    # A judge like mmgen's (an ImageClassifier), trained for 16 steps: its features respond to the stripes'
    # period-4 structure, which a Gaussian blur attenuates more the larger sigma (its frequency response
    # exp(-2 pi^2 sigma^2 f^2) falls with sigma at every f), so blurred sets should drift away monotonically.
    images, labels = pattern_images(1200, seed=0)
    judge = train_classifier(images[:400], labels[:400], 4, epochs=2, batch_size=50)
    assert (judge.predict(images[400:]) == labels[400:]).float().mean() > 0.9  # the features do see the classes
    features = judge_features(judge, "a test judge")
    assert features.name == "penultimate layer (128 features) of a test judge"
    first, second = images[400:800], images[800:]
    reference = FrechetReference(first, features)
    reference.add(second)
    halves = reference.distance()
    blurred = []
    for sigma in (0.5, 0.75, 1.0, 1.5, 2.0):
        size = 2 * math.ceil(3 * sigma) + 1
        reference.add(gaussian_blur(second, [size, size], [sigma, sigma]))
        blurred.append(reference.distance())
    assert 0 <= halves < 0.05 * blurred[0]  # measured: 0.03 against 2.8
    assert all(a < b for a, b in itertools.pairwise(blurred)), blurred


# ---- Inception-v3, from a file only ---------------------------------------------------------------------
def test_inception_refuses_in_one_line_without_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MmgenError) as caught:
        inception_features()
    message = str(caught.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE) in message
    assert "pip install 'mmgen[inception]'" in message and "\n" not in message
    with pytest.raises(MmgenError, match="elsewhere.pth"):
        inception_features(tmp_path / "elsewhere.pth")


def test_inception_without_torch_fidelity_names_the_extra_and_the_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity... raises ImportError
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(MmgenError, match=r"pip install 'mmgen\[inception\]'.*" + INCEPTION_FILE) as caught:
        inception_features()
    assert "\n" not in str(caught.value)


def test_the_expected_file_is_the_one_torch_fidelity_downloads():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert URL_INCEPTION_V3.rsplit("/", 1)[-1] == INCEPTION_FILE


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"not a torch file")
    with pytest.raises(MmgenError, match="not torch-fidelity's Inception-v3 state dict"):
        inception_features(tmp_path / "w.pth")


def test_inception_pixels_are_rounded_and_grey_is_repeated():
    stored = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(rgb_pixels(stored.float() / 255), stored.expand(1, 3, 16, 16))  # every level comes back
    assert rgb_pixels(torch.tensor([0.999, 0.001, 1.5, -0.2]).view(1, 1, 2, 2)).flatten(1)[0, :4].tolist() == \
        [255, 0, 255, 0]
    with pytest.raises(MmgenError, match="4 channels"):
        rgb_pixels(torch.zeros(1, 4, 2, 2))


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """(path, state dict): torch-fidelity's Inception-v3 with random He-initialized weights, saved like its file."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    with pytest.MonkeyPatch.context() as mp:  # build the network's shapes without any weights file
        mp.setattr(fidelity.torch, "load", lambda *args, **kwargs: {})
        mp.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *args, **kwargs: None)
        shapes = fidelity.FeatureExtractorInceptionV3("shapes", ["2048"], feature_extractor_weights_path="-")
    g = torch.Generator().manual_seed(0)
    weights = {}
    for key, value in shapes.state_dict().items():
        if key.endswith("conv.weight"):  # He init keeps activations of order 1 through the 94 conv layers
            value = torch.randn(value.shape, generator=g) * math.sqrt(2 / value[0].numel())
        weights[key] = value.half() if value.is_floating_point() else value  # half: a 48 MB file, not 96
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    torch.save(weights, path)
    return path, weights


def test_inception_reads_its_file_and_feeds_torch_fidelity_grey_as_rgb(random_inception, tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    path, weights = random_inception
    monkeypatch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # where the default path is looked for
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / INCEPTION_FILE).symlink_to(path)
    net = inception_features()
    conv = net.extractor.Conv2d_1a_3x3.conv.weight
    assert torch.equal(conv, weights["Conv2d_1a_3x3.conv.weight"].float())  # the file's weights, not others
    assert net.num_features == 2048 and INCEPTION_FILE in net.name and "299x299" in net.name
    assert "not the published 6726825d" in net.name  # random weights under the published name: said, not hidden
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    features = net(grey.float() / 255)  # (2, 2048); each image costs a second at 299 x 299
    (expected,) = net.extractor(grey.expand(-1, 3, -1, -1))  # torch-fidelity's own input: uint8 RGB
    assert features.shape == (2, 2048) and torch.equal(features, expected)
    assert (expected[0] - expected[1]).abs().mean() > 1e-3  # the features do differ between images


# ---- fid_report on a tiny model --------------------------------------------------------------------------
N = 40


@pytest.fixture
def tiny(toy_dataset):  # noqa: F811
    """A toy model of four modalities and its N test inputs; ``image`` is ``(N, 1, 4, 4)`` in [0, 1]."""
    model = make_model(("image", "label", "tag", "extra"), data=toy_dataset)
    return model, make_batch(["image", "label", "tag", "extra"], N)


def fid_to_one_image(real: torch.Tensor, generated: torch.Tensor) -> float:
    """FID of ``real`` ``(n, F)`` to a set of copies of one ``generated`` ``(F,)``: its covariance is 0."""
    real = real.double()
    return float((real.mean(0) - generated.double()).square().sum() + real.var(0).sum())


def decoded_at(model, name: str, value: float):
    """``name``'s likelihood mean at the latent vector of ``value``s, flattened: ``(F,)``."""
    with torch.no_grad():
        z = torch.full((1, D), float(value))
        return model.modalities[name].mean(model.decode(z, [name])[name]).flatten()


class SameForEvery:
    """A stand-in posterior whose every draw is the latent vector ``value`` (batch ``b``)."""

    def __init__(self, value: float, b: int):
        self.value, self.b = value, b

    def sample(self):
        return torch.full((self.b, D), float(self.value))


def test_fid_report_tables_against_sets_of_identical_images(tiny, monkeypatch):
    model, batch = tiny
    present = {n: torch.ones(N, dtype=torch.bool) for n in batch}
    present["label"][::4] = False  # 10 examples lack their label
    present["image"][:5] = False  # and 5 their image: the real set keeps 35
    calls = []

    def posterior(given, present=None):  # z = 0.5 k for a subset of k modalities: all its images alike
        calls.append((",".join(given), next(iter(given.values())).shape[0]))
        return SameForEvery(0.5 * len(given), next(iter(given.values())).shape[0])

    monkeypatch.setattr(model, "posterior", posterior)
    drawn = []
    zeros = {"zeros": lambda n: (drawn.append(n), torch.zeros(n, D))[1]}
    # The tag's class probabilities stand in for a second image modality: FID needs only features.
    features = {"image": Flat(16), "tag": Flat(4)}
    real = {"image": batch["image"], "tag": torch.rand(N, 4)}
    out = fid_report(model, features, batch, real, present, latents=zeros, batch_size=7)["fid"]

    kept = {"image": real["image"][present["image"]].flatten(1), "tag": real["tag"]}
    assert drawn == [N] and out["samples"] == N and out["real images"] == {"image": 35, "tag": N}
    for m in features:
        assert out["unconditional"]["zeros"][m] == pytest.approx(fid_to_one_image(kept[m], decoded_at(model, m, 0)),
                                                                 rel=1e-6)
    # Every subset of the other three, per target; a subset with the label has only the 30 examples with it.
    for m in features:
        for key, value in out["conditional per subset"][m].items():
            assert m not in key.split(",")
            expected = fid_to_one_image(kept[m], decoded_at(model, m, 0.5 * len(key.split(","))))
            assert value == pytest.approx(expected, rel=1e-6), (m, key)
    assert set(out["conditional per subset"]["image"]) == {"label", "tag", "extra", "label,tag", "label,extra",
                                                           "tag,extra", "label,tag,extra"}
    assert out["conditional samples"]["label,tag"] == 30 and out["conditional samples"]["tag,extra"] == N
    generated = {}
    for key, b in calls:
        generated[key] = generated.get(key, 0) + b
    assert all(b <= 7 for _, b in calls) and generated == out["conditional samples"]  # batched, one draw per subset
    everything = [(m, key, v) for m, table in out["conditional per subset"].items() for key, v in table.items()]
    for k in ("1", "2", "3"):
        values = [v for _, key, v in everything if len(key.split(",")) == int(k)]
        assert out["conditional"][k] == pytest.approx(sum(values) / len(values))
        for m in features:
            mine = [v for m2, key, v in everything if m2 == m and len(key.split(",")) == int(k)]
            assert out["conditional per target"][m][k] == pytest.approx(sum(mine) / len(mine))
    assert out["features"] == {"image": Flat.name, "tag": Flat.name}
    assert out["notes"] == []  # 16 and 4 features, for 27 to 40 images
    assert json.loads(json.dumps(out)) == out  # eval.json takes it as it is


def test_fid_report_is_seeded_leaves_the_callers_rng_alone_and_skips_what_no_example_has(tiny):
    model, batch = tiny
    real = {"image": batch["image"]}
    before = torch.get_rng_state()
    first = fid_report(model, {"image": Flat(16)}, batch, real, seed=3)["fid"]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)  # another caller state: the same numbers
    assert fid_report(model, {"image": Flat(16)}, batch, real, seed=3)["fid"] == first  # default sampler: "prior"
    assert set(first["unconditional"]) == {"prior"} and set(first["conditional"]) == {"1", "2", "3"}
    assert all(math.isfinite(v) and v > 0 for v in first["conditional per subset"]["image"].values())
    few = fid_report(model, {"image": Flat(16)}, {n: x[:10] for n, x in batch.items()}, {"image": real["image"][:10]},
                     conditional_sizes=())["fid"]
    assert few["conditional"] == {} and "singular covariance" in few["notes"][0]  # 10 images, 16 features

    present = {n: torch.full((N,), n != "label") for n in batch}  # no example has its label
    out = fid_report(model, {"image": Flat(16)}, batch, real, present, latents={}, conditional_sizes=[1])["fid"]
    assert out["unconditional"] == {}
    assert out["conditional per subset"]["image"] == {"label": None, "tag": out["conditional per subset"]["image"]
                                                      ["tag"], "extra": out["conditional per subset"]["image"]["extra"]}
    assert out["conditional"]["1"] == pytest.approx((out["conditional per subset"]["image"]["tag"]
                                                     + out["conditional per subset"]["image"]["extra"]) / 2)
    assert any("label" in note and "no FID" in note for note in out["notes"])


def test_fid_report_names_what_it_lacks(tiny):
    model, batch = tiny
    with pytest.raises(MmgenError, match="nope is no modality of the model; no real images of image"):
        fid_report(model, {"image": Flat(16), "nope": Flat(1)}, batch, {})
