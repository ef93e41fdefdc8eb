"""Strings <-> character indices, shared by the text modality and the dataset so both spell alike.

A text is stored as int64 indices ``(N, L)`` into the vocabulary ``pad + alphabet``: index 0 is
the padding character, which fills every position the text does not use.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
DEFAULT_PAD = "_"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def word_table(words: list[str] | tuple[str, ...], vocabulary: str, length: int) -> tuple[Tensor, Tensor]:
    """Each word spelled at offset 0 and padded: indices ``(K, L)`` long, and the word lengths ``(K,)`` long."""
    index = {c: i for i, c in enumerate(vocabulary)}
    table = torch.zeros(len(words), length, dtype=torch.long)
    for k, word in enumerate(words):
        table[k, : len(word)] = torch.tensor([index[c] for c in word], dtype=torch.long)
    return table, torch.tensor([len(w) for w in words], dtype=torch.long)


def spell(table: Tensor, lengths: Tensor, classes: Tensor, u: Tensor) -> Tensor:
    """Class indices ``(N,)`` and ``u`` ``(N,)`` in [0, 1) -> texts ``(N, L)``: word ``classes[i]`` at offset
    ``floor(u[i] * (L - len + 1))``.

    Uniform ``u`` gives every offset that fits the word the same chance. Shifting a row right by the
    offset moves its trailing padding to the front; indices that wrap past the end land on padding,
    because the offset never exceeds ``L - len``.
    """
    L = table.shape[1]
    n = lengths[classes]  # (N,)
    offsets = torch.minimum((u * (L - n + 1)).long(), L - n)  # (N,); the minimum guards u == 1.0 rounding
    source = (torch.arange(L, device=classes.device) - offsets[:, None]) % L  # (N, L) position in the word row
    return table[classes].gather(1, source)  # (N, L)


def to_strings(indices: Tensor, vocabulary: str) -> list[str]:
    """Indices ``(N, L)`` -> N strings of length L, padding included."""
    return ["".join(vocabulary[i] for i in row) for row in indices.tolist()]
