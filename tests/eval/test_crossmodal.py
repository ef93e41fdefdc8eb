"""Cross-modal accuracy and coherence on hand-made models whose answers are known in advance,
and the judge's classifier cache.

The stand-in model is a real ``MultimodalVAE`` built from three small stand-ins: a label whose
expert is the one-hot of its class, a "painter" image modality that draws a class as one bright
row of a 10x10 picture, and a fusion whose B samples are known (evenly spaced "coins" on the last
latent coordinate). The judge reads the bright row. So every count below is exact.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Independent

from mmgen import Fusion, FusionConfig, Modality, ModalityConfig
from mmgen.eval import judge
from mmgen.eval.crossmodal import (
    SelfReader,
    class_sources,
    coherence,
    joint_coherence,
    prediction_accuracy,
    self_reading,
)
from mmgen_plugins.families.mvae import MultimodalVAE, MVAEConfig

K = 10  # classes
D = K + 1  # latent: one coordinate per class, then the coin


# ---- stand-ins -----------------------------------------------------------------------------------
def expert(classes: Tensor) -> tuple[Tensor, Tensor]:
    """Class indices ``(B,)`` -> a sharp expert at the one-hot of the class, coin 0: ``(B, D)`` each."""
    mu = torch.cat([nn.functional.one_hot(classes, K).float(), torch.zeros(classes.shape[0], 1)], -1)
    return mu, torch.full_like(mu, -30.0)


class Code(Modality):
    """A label: class k is the latent one-hot e_k; decoding reads the largest class coordinate."""

    def __init__(self, name, config, latent_dim):
        super().__init__(name, config, latent_dim)
        self.scale = nn.Parameter(torch.tensor(10.0))  # a parameter, so the model has a device

    def encode(self, y):
        return expert(y)

    def decode(self, z):
        return self.scale * z[..., :K]  # logits (*S, K)

    def likelihood(self, params):
        return Categorical(logits=params)

    def parse_given(self, value):
        return torch.tensor([int(value)])

    @property
    def num_classes(self):
        return K


class Painter(Modality):
    """An image modality: draws class argmax(z[:K]) as a bright row when the coin z[K] < skill[class],
    otherwise draws the next class (mod K). Encoding reads the bright row back."""

    def __init__(self, name, config, latent_dim, skill):
        super().__init__(name, config, latent_dim)
        self.register_buffer("skill", torch.as_tensor(skill, dtype=torch.float))  # (K,)

    def encode(self, x):
        return expert(bright_row(x))

    def decode(self, z):
        k = z[..., :K].argmax(-1)
        drawn = torch.where(z[..., K] < self.skill[k], k, (k + 1) % K)
        rows = nn.functional.one_hot(drawn, K).float()  # (*S, K)
        return rows[..., None, :, None].expand(*drawn.shape, 1, K, K)  # (*S, 1, K, K)

    def likelihood(self, params):
        return Independent(Bernoulli(probs=params), 3)

    def mean(self, params):
        return params

    def parse_given(self, value):
        raise AssertionError("these tests never parse a --given value")

    def to_image(self, mean):
        return mean


def bright_row(images: Tensor) -> Tensor:
    """``(N, 1, K, K)`` -> the index of the brightest row ``(N,)``."""
    return images[:, 0].mean(-1).argmax(-1)


class KnownSamples:
    """q(z|X) at ``loc`` ``(B, D)`` whose ``sample()`` puts the coins (i + 0.5) / B, i < B, on the last coordinate."""

    def __init__(self, loc):
        self.mean = loc

    def sample(self):
        B = self.mean.shape[0]
        z = self.mean.clone()
        z[:, -1] = (torch.arange(B) + 0.5) / B
        return z


class KnownFusion(Fusion):
    def forward(self, mu, logvar, use):
        return KnownSamples((mu * use[..., None]).sum(0))  # (M, B, D) -> (B, D)


class RowJudge:
    """A perfect classifier for the painter's pictures."""

    def predict(self, images):
        return bright_row(images)


def model(skill) -> MultimodalVAE:
    modalities = {
        "image": Painter("image", ModalityConfig(kind="painter"), D, skill),
        "label": Code("label", ModalityConfig(kind="code"), D),
    }
    return MultimodalVAE(modalities, KnownFusion(FusionConfig(kind="known"), D, 2), MVAEConfig(latent_dim=D))


def readers(m: MultimodalVAE) -> dict:
    """The label reads itself (its default ``classes_of``); the picture is read by the judge."""
    return {"label": SelfReader(m, "label"), "image": RowJudge()}


def pictures(classes: list[int]) -> Tensor:
    return nn.functional.one_hot(torch.tensor(classes), K).float()[:, None, :, None].expand(-1, 1, K, K)


# ---- accuracy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [2000, 3, 1])
def test_prediction_accuracy_is_the_fraction_decoded_right(batch_size):
    truth = torch.arange(K)
    drawn = [0, 1, 2, 3, 4, 5, 6, 0, 0, 0]  # the last three images show the wrong digit
    acc = prediction_accuracy(model([1.0] * K), {"image": pictures(drawn)}, "label", truth, batch_size=batch_size)
    assert acc == pytest.approx(0.7)


def test_prediction_accuracy_from_the_label_itself_is_perfect():
    truth = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    assert prediction_accuracy(model([1.0] * K), {"label": truth}, "label", truth) == 1.0
    assert prediction_accuracy(model([1.0] * K), {"label": truth}, "label", (truth + 1) % K) == 0.0


# ---- coherence -----------------------------------------------------------------------------------
def test_coherence_counts_the_samples_judged_as_their_class():
    # With 10 samples per class the coins are 0.05, 0.15, ..., 0.95: class k is drawn right
    # exactly skill[k] * 10 times.
    skill = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.8, 0.7, 0.6, 0.4]
    mean, per = coherence(model(skill), RowJudge(), "label", "image", K, per_class=10)
    assert per == pytest.approx(skill)
    assert mean == pytest.approx(0.7)


def test_coherence_with_one_sample_per_class():
    # One sample per class: coin 0.5, so a class is right exactly when its skill is above 0.5.
    skill = [1, 1, 0, 1, 1, 0, 1, 1, 0, 1]
    mean, per = coherence(model(skill), RowJudge(), "label", "image", K, per_class=1)
    assert per == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert mean == pytest.approx(0.7)


def test_coherence_judges_against_the_class_given_not_the_picture():
    class AlwaysThree:
        def predict(self, images):
            return torch.full((images.shape[0],), 3)

    mean, per = coherence(model([1.0] * K), AlwaysThree(), "label", "image", K, per_class=4)
    assert per == [0.0, 0.0, 0.0, 1.0] + [0.0] * 6
    assert mean == pytest.approx(0.1)


# ---- joint coherence -----------------------------------------------------------------------------
def test_joint_coherence_of_a_painter_that_always_agrees_or_never_does():
    assert joint_coherence(model([math.inf] * K), readers(model([math.inf] * K)), n=300) == 1.0
    assert joint_coherence(model([-math.inf] * K), readers(model([-math.inf] * K)), n=300) == 0.0


def test_joint_coherence_samples_the_prior():
    # z ~ N(0, I): the coin is below 0 for half the samples, and the label and picture then agree.
    n = 2000
    value = joint_coherence(model([0.0] * K), readers(model([0.0] * K)), n=n, seed=1)
    assert abs(value - 0.5) < 4 * math.sqrt(0.25 / n)
    assert (value * n) == pytest.approx(round(value * n))  # a fraction of n samples
    assert joint_coherence(model([0.0] * K), readers(model([0.0] * K)), n=n, seed=1) == value
    # Half the classes always agree, half never: argmax(z[:K]) is uniform, so again about 0.5.
    half = model([math.inf] * 5 + [-math.inf] * 5)
    value = joint_coherence(half, readers(half), n=n)
    assert abs(value - 0.5) < 4 * math.sqrt(0.25 / n)


def test_joint_coherence_needs_every_reader_to_agree():
    class Never:
        def predict(self, means):
            return torch.full((means.shape[0],), -1)

    m = model([math.inf] * K)  # the painter always agrees with the label...
    assert joint_coherence(m, readers(m), n=100) == 1.0
    assert joint_coherence(m, {"label": Never(), "image": Never()}, n=100) == 0.0  # ...but "none" is no class


def test_what_each_modality_offers_to_cross_modal_metrics():
    m = model([1.0] * K)
    assert self_reading(m) == ["label"] and class_sources(m) == ["label"]


# ---- the judge's classifier cache ---------------------------------------------------------------
def small_data(classes: int = 4, n: int = 48, seed: int = 0) -> tuple[Tensor, Tensor]:
    """uint8 ``(n, 1, 8, 8)`` with a bright row per class, and the labels ``(n,)``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 40, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
    images[torch.arange(n), 0, 2 * labels] = 230
    return images, labels


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "classifiers"


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    train = judge.train_classifier

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return train(*args, **kwargs)

    monkeypatch.setattr(judge, "train_classifier", counted)
    return calls


def test_classifier_is_cached_and_loaded_the_second_time(cache, count_training):
    images, labels = small_data()
    first = judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=2)
    assert len(count_training) == 1
    (path,) = cache.glob("toy-*.safetensors")
    assert path.name == f"toy-{judge.data_key(images, labels)}-v{judge.CLASSIFIER_VERSION}-e2.safetensors"

    second = judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=2)
    assert len(count_training) == 1  # loaded, not trained again
    assert second is not first
    x = judge.as_unit_float(images)
    assert torch.equal(first.predict(x), second.predict(x))
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key


def test_other_data_does_not_reuse_the_cache(cache, count_training):
    images, labels = small_data()
    judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=1)

    relabelled = labels.roll(1)
    judge.load_or_train_classifier(images, relabelled, 4, name="toy", epochs=1)
    redrawn = images.clone()
    redrawn[5, 0, 0, 0] += 1  # one pixel of one image
    judge.load_or_train_classifier(redrawn, labels, 4, name="toy", epochs=1)
    judge.load_or_train_classifier(images, labels, 4, name="other", epochs=1)  # another name, another file
    judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=2)  # trained for longer: not the same

    assert len(count_training) == 5
    assert len({judge.data_key(images, labels), judge.data_key(images, relabelled),
                judge.data_key(redrawn, labels)}) == 3
    assert len(list(cache.glob("*.safetensors"))) == 5


def test_cache_goes_where_MMGEN_CACHE_says(cache, tmp_path):
    images, labels = small_data(n=16)
    judge.load_or_train_classifier(images, labels, 4, name="here", epochs=1)
    assert judge.cache_dir() == tmp_path / "cache"
    assert len(list(cache.glob("here-*.safetensors"))) == 1


def test_loading_a_classifier_leaves_the_callers_random_stream_alone(cache):
    images, labels = small_data(n=16)
    for _ in range(2):  # trained, then loaded from the cache
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        judge.load_or_train_classifier(images, labels, 4, name="rng", epochs=1)
        assert torch.equal(torch.rand(3), expected)


def test_a_new_classifier_version_is_trained_not_loaded(cache, count_training, monkeypatch):
    images, labels = small_data(n=16)
    judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=1)
    monkeypatch.setattr(judge, "CLASSIFIER_VERSION", judge.CLASSIFIER_VERSION + 1)
    judge.load_or_train_classifier(images, labels, 4, name="toy", epochs=1)
    assert len(count_training) == 2 and len(list(cache.glob("toy-*.safetensors"))) == 2
