"""The text modality on its own: shapes, the likelihood, --given parsing, classes and examples, reporting."""

from __future__ import annotations

import pytest
import torch
from mmgen import GivenError
from pydantic import ValidationError

from mmgen_text.modality import CharText, TextConfig
from mmgen_text.spelling import DIGIT_NAMES

L, V, D = 8, 27, 6  # length, vocabulary (pad + a-z), latent size


def make(**overrides) -> CharText:
    torch.manual_seed(0)
    config = TextConfig(kind="text", classes=list(DIGIT_NAMES), channels=[16, 8], embedding_dim=4, **overrides)
    return CharText("text", config, D)


def one_hot_means(x: torch.Tensor) -> torch.Tensor:
    """Stored texts ``(N, L)`` -> certain decoded means ``(N, L, V)``."""
    return torch.nn.functional.one_hot(x, V).float()


def test_encode_and_decode_shapes():
    text = make()
    x = torch.randint(0, V, (5, L))
    mu, logvar = text.encode(x)
    assert mu.shape == logvar.shape == (5, D)
    assert text.decode(torch.randn(3, 5, D)).shape == (3, 5, L, V)  # (*S, D) -> (*S, L, V)
    assert text.decode(torch.randn(D)).shape == (L, V)


def test_log_likelihood_is_the_sum_of_per_position_categoricals():
    text = make()
    params = torch.randn(3, 5, L, V)  # (T, B, L, V)
    x = torch.randint(0, V, (5, L))  # broadcast over the 3 terms, as the ELBO does
    direct = params.log_softmax(-1).gather(-1, x.expand(3, 5, L)[..., None]).squeeze(-1).sum(-1)  # (T, B)
    dist = text.likelihood(params)
    assert dist.batch_shape == (3, 5) and dist.event_shape == (L,)
    torch.testing.assert_close(text.log_likelihood(params, x), direct)
    torch.testing.assert_close(text.mean(params).sum(-1), torch.ones(3, 5, L))


def test_parse_given_places_the_text_at_offset_zero():
    x = make().parse_given("seven")
    assert x.dtype == torch.long and x.shape == (1, L)
    assert x.tolist() == [[19, 5, 22, 5, 14, 0, 0, 0]]  # s e v e n, then the pad (index 0)
    assert torch.equal(make().parse_given(x[0]), x)  # a tensor of indices is taken as is


@pytest.mark.parametrize(("value", "says"), [
    ("Seven", "outside the alphabet: 'S'"),
    ("se7en!", "outside the alphabet: '!7'"),
    ("", "is empty"),
    ("seventeen", "has 9 characters; text takes at most 8"),
])
def test_parse_given_rejects_unusable_text_in_one_line(value, says):
    with pytest.raises(GivenError) as info:
        make().parse_given(value)
    message = str(info.value)
    assert says in message and "\n" not in message and message.startswith(f"text={value!r}")


def test_parse_given_rejects_a_tensor_of_the_wrong_shape_or_range():
    for bad in (torch.zeros(L + 1, dtype=torch.long), torch.full((L,), V)):
        with pytest.raises(GivenError, match="character indices"):
            make().parse_given(bad)


def test_examples_of_spell_their_class_and_classes_of_reads_it_back():
    text = make()
    classes = torch.arange(10).repeat(20)  # (200,)
    x = text.examples_of(classes, torch.Generator().manual_seed(1))  # (200, L)
    assert x.shape == (200, L) and x.dtype == torch.long
    assert torch.equal(text.classes_of(one_hot_means(x)), classes)
    # Random offsets, as in the data: "one" (3 letters) fits at 0..5 in 8 characters.
    starts = {row.index(next(c for c in row if c)) for row in x[classes == 1].tolist()}
    assert starts == set(range(6))
    again = text.examples_of(classes, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)  # the generator decides the offsets


def test_classes_of_reads_the_nearest_name_at_any_offset():
    text = make()
    rows = ["seven___", "_sevem__", "se_ven__", "___thre_", "__eight_", "_nnie___"]
    x = torch.tensor([[text.vocabulary.index(c) for c in r] for r in rows])
    assert text.classes_of(one_hot_means(x)).tolist() == [7, 7, 7, 3, 8, 9]


def test_classes_of_reads_a_name_whose_offset_the_decoder_could_not_know():
    text = make()
    placed = torch.cat([text.words[7].roll(o)[None] for o in range(4)])  # "seven" at offsets 0..3, (4, L)
    mixed = one_hot_means(placed).mean(0, keepdim=True)  # (1, L, V): what a decoder given only an image learns
    garbled = "".join(text.vocabulary[i] for i in mixed[0].argmax(-1).tolist())
    assert garbled.strip("_") != "seven"  # the per-position argmax is no name ...
    assert text.classes_of(mixed).tolist() == [7]  # ... but the most probable placement is


def test_classes_of_is_the_name_of_the_most_probable_placement():
    """Against the brute force: every name at every offset, each text's log-probability summed over all positions."""
    text = make()
    means = torch.randn(300, L, V, generator=torch.Generator().manual_seed(0)).softmax(-1)  # (N, L, V)
    logp = means.log()
    best = []
    for k in range(len(DIGIT_NAMES)):
        texts = [text.words[k].roll(o) for o in range(L - int(text.word_lengths[k]) + 1)]  # each (L,)
        scores = [logp.gather(-1, t.expand(300, L)[..., None]).squeeze(-1).sum(-1) for t in texts]  # each (N,)
        best.append(torch.stack(scores).amax(0))
    assert torch.equal(text.classes_of(means), torch.stack(best, -1).argmax(-1))


def test_without_class_names_the_text_reads_no_class():
    text = CharText("text", TextConfig(kind="text"), D)
    assert text.classes_of(one_hot_means(torch.zeros(2, L, dtype=torch.long))) is None
    assert text.examples_of(torch.tensor([1, 2])) is None
    assert text.num_classes is None and text.to_image(torch.zeros(2, L, V)) is None


def test_describe_prints_the_most_probable_strings():
    text = make()
    seven = one_hot_means(text.parse_given("seven"))  # (1, L, V)
    assert text.describe(seven) == "text: 'seven'"
    assert text.describe(one_hot_means(text.parse_given("sevem"))) == "text: 'sevem', reads as seven"
    many = one_hot_means(text.examples_of(torch.tensor([7, 7, 7, 1]), torch.Generator()))
    strings = "text: most often 'seven' (3 of 4 samples)  ['seven':3  'one':1]"
    assert text.describe(many) == f"{strings}; reads as seven in 3 of 4"
    plain = CharText("text", TextConfig(kind="text"), D)  # no class names: the strings only
    assert plain.describe(many) == strings
    assert "8 characters" in text.evaluation_note()


@pytest.mark.parametrize(("overrides", "says"), [
    ({"kernel_size": 4}, "must be odd"),
    ({"classes": ["seventeen"]}, "not a text of 1 to 8"),
    ({"classes": ["one", "one"]}, "repeats a name"),
    ({"alphabet": "ab_"}, "contains the pad"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_config_rejects_inconsistent_settings(overrides, says):
    with pytest.raises(ValidationError, match=says):
        TextConfig(kind="text", **overrides)
