"""A fixed-length character string with a categorical likelihood per position (the text of MNIST-SVHN-Text).

Stored as int64 ``(N, L)`` indices into ``pad + alphabet`` (index 0 pads). The encoder embeds the
characters and runs 1-D convolutions along the string; the decoder mirrors it and gives logits
``(*S, L, V)``. p(text | z) is a product of independent categoricals, one per position.

A text given on the command line (``--given text=seven``) is placed at offset 0 and padded after;
the data put each name at a random offset, so offset 0 is one of the placements the model saw.
With class names configured, a decoded text is read as the name whose best placement is most
probable (``classes_of``), because a text decoded from another modality cannot know the offset.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import torch
from mmgen import ClassSpace, GivenError, Modality, ModalityConfig, hookimpl
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn
from torch.distributions import Categorical, Independent

from mmgen_text.spelling import DEFAULT_ALPHABET, DEFAULT_PAD, spell, to_strings, word_table


class TextConfig(ModalityConfig):
    """A character-level text modality: embedding + Conv1d encoder, Conv1d decoder to per-position logits."""

    length: int = Field(8, ge=1, description="Characters per stored text L; shorter texts are padded to it.")
    alphabet: str = Field(DEFAULT_ALPHABET, min_length=1, description="Characters a text may use, pad excluded.")
    pad: str = Field(DEFAULT_PAD, min_length=1, max_length=1, description="Padding character, vocabulary index 0.")
    classes: list[str] | None = Field(
        None, description="Class names the texts spell, in class order (e.g. the digit names); lets mmgen read a "
        "class from a decoded text and write a text for a class (accuracy, coherence).",
    )
    embedding_dim: int = Field(32, ge=1, description="Width of the character embedding.")
    channels: list[PositiveInt] = Field(
        [64, 64], min_length=1, description="Output channels of the encoder's Conv1d layers; the decoder mirrors them."
    )
    kernel_size: int = Field(3, ge=1, description="Odd Conv1d kernel size; padding keeps the length L.")

    @model_validator(mode="after")
    def _consistent(self) -> TextConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd, so the convolutions keep the length")
        if len(set(self.alphabet)) != len(self.alphabet) or self.pad in self.alphabet:
            raise ValueError(f"alphabet {self.alphabet!r} repeats a character or contains the pad {self.pad!r}")
        for name in self.classes or []:
            bad = sorted(set(name) - set(self.alphabet))
            if not name or bad or len(name) > self.length:
                raise ValueError(f"class name {name!r} is not a text of 1 to {self.length} alphabet characters")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("classes repeats a name")
        return self


class CharText(Modality):
    Config = TextConfig
    config: TextConfig

    def __init__(self, name: str, config: TextConfig, latent_dim: int, decode_dim: int | None = None):
        super().__init__(name, config, latent_dim, decode_dim)
        self.vocabulary = config.pad + config.alphabet
        L, V, k, widths = config.length, len(self.vocabulary), config.kernel_size, config.channels
        self.embedding = nn.Embedding(V, config.embedding_dim)
        self.encoder = conv_stack([config.embedding_dim, *widths], k)
        self.head = nn.Linear(widths[-1] * L, 2 * latent_dim)  # mu and logvar from one matmul
        self.expand = nn.Linear(self.decode_dim, widths[-1] * L)
        self.decoder = nn.Sequential(conv_stack(widths[::-1], k), nn.Conv1d(widths[0], V, 1))  # 1x1: logits
        table, lengths = word_table(config.classes or [], self.vocabulary, L)
        self.register_buffer("words", table, persistent=False)  # (K, L) class names at offset 0
        self.register_buffer("word_lengths", lengths, persistent=False)  # (K,)
        self.spellings = [[self.vocabulary.index(c) for c in name] for name in config.classes or []]

    # ---- model -------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embedding(x).transpose(1, 2)  # (B, L) -> (B, E, L): Conv1d wants channels first
        h = self.encoder(h).flatten(1)  # (B, C*L)
        mu, logvar = self.head(h).chunk(2, dim=-1)  # 2 x (B, D)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        S, L = z.shape[:-1], self.config.length
        h = nn.functional.silu(self.expand(z.reshape(-1, self.decode_dim)))  # (prod S, C*L)
        logits = self.decoder(h.unflatten(1, (-1, L)))  # (prod S, C, L) -> (prod S, V, L)
        return logits.transpose(1, 2).reshape(*S, L, len(self.vocabulary))  # (*S, L, V)

    def likelihood(self, params: Tensor) -> Independent:
        # batch_shape S, event_shape (L,): log_prob sums the L per-position categoricals.
        return Independent(Categorical(logits=params, validate_args=False), 1, validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return params.softmax(-1)  # per-position character probabilities (*S, L, V); Categorical has no mean

    # ---- data --------------------------------------------------------------------------
    def parse_given(self, value: Any) -> Tensor:
        if isinstance(value, Tensor):  # (L,) one text, or a batch (N, L)
            x = value.detach().cpu()
            L, V = self.config.length, len(self.vocabulary)
            if x.dim() not in (1, 2) or x.shape[-1] != L or x.numel() == 0 or x.is_floating_point():
                raise GivenError(f"{self.name}: expected {L} character indices, or a batch (N, {L}) of them, "
                                 f"got a tensor of shape {tuple(x.shape)} and dtype {x.dtype}")
            x = x.long().reshape(-1, L)
            if not bool(((x >= 0) & (x < V)).all()):
                raise GivenError(f"{self.name}: character indices must lie in [0, {V})")
            return x
        text, L = str(value), self.config.length
        bad = sorted(set(text) - set(self.config.alphabet))
        if not text or bad:
            what = f"has characters outside the alphabet: {''.join(bad)!r}" if text else "is empty"
            raise GivenError(f"{self.name}={text!r} {what} ({self.name} takes 1 to {L} of {self.config.alphabet!r})")
        if len(text) > L:
            raise GivenError(f"{self.name}={text!r} has {len(text)} characters; {self.name} takes at most {L}")
        table, _ = word_table([text], self.vocabulary, L)
        return table  # (1, L): offset 0, padded after

    def tokens_of(self, mean: Tensor) -> Tensor:
        """The most probable character at each position, ``(N, L)`` indices into pad + alphabet, as stored."""
        return mean.argmax(-1)

    def class_space(self) -> ClassSpace | None:
        """The classes the texts spell, in the data set's class order: its class field is the truth."""
        return ClassSpace(len(self.config.classes)) if self.config.classes else None

    def classes_of(self, mean: Tensor) -> Tensor | None:
        """The class whose name, at the offset that suits it best, is the most probable text; never -1.

        Not the per-position argmax string: a text decoded from another modality cannot know the
        offset, so its per-position probabilities mix the name's placements ("seven" at 0..3 gives
        argmax strings like "eev", read as no name). Scoring whole placements reads the name anyway.
        It is a forced choice, like the classifier that judges generated images: the empty text is
        no candidate, because a short name spread over six offsets makes padding the likeliest
        character everywhere.
        """
        if not self.config.classes:
            return None
        logp = mean.clamp_min(torch.finfo(mean.dtype).tiny).log()  # (N, L, V)
        # A placement's log-probability is that of all pads plus, at each of its characters, what the
        # character gains over the pad: the pads' part is the same for every placement, so only gains count.
        gain = logp - logp[..., :1]  # (N, L, V)
        best = []
        for spelling in self.spellings:  # each name at each of its O = L - len + 1 offsets
            fits = self.config.length - len(spelling) + 1
            best.append(sum(gain[:, j : j + fits, c] for j, c in enumerate(spelling)).amax(-1))  # (N, O) -> (N,)
        return torch.stack(best, -1).argmax(-1)  # (N, K) -> (N,): the first of equals, in the names' order

    def examples_of(self, classes: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        if not self.config.classes:
            return None
        device = generator.device if generator is not None else classes.device
        u = torch.rand(classes.shape[0], generator=generator, device=device).to(classes.device)  # (N,)
        words, lengths = self.words.to(classes.device), self.word_lengths.to(classes.device)
        return spell(words, lengths, classes.long(), u)  # (N, L) like the data: a random offset per text

    # ---- reporting ---------------------------------------------------------------------
    def evaluation_note(self) -> str:
        return (f"categorical log-probability of each of the {self.config.length} characters (vocabulary of "
                f"{len(self.vocabulary)} with the pad {self.config.pad!r}), summed over positions")

    def describe(self, mean: Tensor) -> str:
        mean = mean.reshape(-1, *mean.shape[-2:])  # (N, L, V)
        # The most probable character per position, with the padding around the text stripped.
        strings = [s.strip(self.config.pad) for s in to_strings(mean.argmax(-1), self.vocabulary)]
        counts = Counter(strings).most_common()
        best, hits = counts[0]
        if len(strings) == 1:
            line = f"{self.name}: {best!r}"
        else:
            cells = "  ".join(f"{s!r}:{c}" for s, c in counts[:5]) + ("  ..." if len(counts) > 5 else "")
            line = f"{self.name}: most often {best!r} ({hits} of {len(strings)} samples)  [{cells}]"
        classes = self.classes_of(mean)
        if classes is None:
            return line
        names = [self.config.classes[k] for k in classes.tolist()]
        name, n = Counter(names).most_common(1)[0]
        if len(strings) == 1:
            return line if name == best else f"{line}, reads as {name}"
        return f"{line}; reads as {name} in {n} of {len(names)}"


def conv_stack(widths: list[int], kernel_size: int) -> nn.Sequential:
    """Conv1d ``widths[0] -> ... -> widths[-1]``, each followed by SiLU; padding keeps the length."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2), nn.SiLU()]
    return nn.Sequential(*layers)


@hookimpl
def register_modalities(register):
    register("text", CharText)
