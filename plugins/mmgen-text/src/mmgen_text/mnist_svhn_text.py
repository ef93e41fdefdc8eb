"""MNIST-SVHN-Text (Sutter et al. 2020, 2021): MNIST-SVHN pairs plus a text spelling their digit.

The pairs, splits, files and errors are those of mmgen's ``mnist_svhn`` data set: this class extends
``mmgen.MnistSvhnDataset``. The ``text`` of a pair is the digit's English name at a random offset in
``text_length`` characters, padded around it ("__seven_"), as the MoPoE code makes it
(``create_text_from_label_mnist`` in its ``utils/text.py``), with these departures:

* the vocabulary is the text modality's, the pad ``_`` (index 0) then ``a``-``z``, not MoPoE's 71
  characters with a space for padding (the names use only ``a``-``z``);
* an offset runs from 0 to ``text_length - len(name)``, as ``mnist_text`` and the text modality's own
  examples place a name, where MoPoE's ``random.randint(0, L - 1 - len)`` never reaches the last one;
* the offsets are drawn once per pair from ``text_seed`` (saved in the run with the pairs), where MoPoE
  draws a new one, unseeded, each time an example is read.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from mmgen import SPLITS, MnistSvhnConfig, MnistSvhnDataset, Split, hookimpl
from pydantic import Field
from torch import Tensor

from mmgen_text.spelling import DEFAULT_ALPHABET, DEFAULT_PAD, DIGIT_NAMES, spell, word_table


class MnistSvhnTextConfig(MnistSvhnConfig):
    """MNIST-SVHN plus a text per pair; pair ``text`` with a text modality of the same length."""

    text_length: int = Field(
        8, ge=max(map(len, DIGIT_NAMES)), le=256, description="Characters per text (the text modality's length; "
        "MoPoE's len_sequence: 8)."
    )
    text_seed: int = Field(0, ge=0, lt=2**63, description="Seed of the random offsets at which the names are placed.")


class MnistSvhnTextDataset(MnistSvhnDataset):
    """``mnist``, ``svhn``, ``label`` and ``text`` int64 ``(N, text_length)`` over pad + ``a``-``z``."""

    Config = MnistSvhnTextConfig
    config: MnistSvhnTextConfig
    fields: ClassVar[dict[str, str]] = {**MnistSvhnDataset.fields, "text": "text"}

    def __init__(self, config: MnistSvhnTextConfig):
        super().__init__(config)
        self._texts: dict[str, Tensor] | None = None

    def texts(self) -> dict[str, Tensor]:
        """Split -> the text of each pair, int64 ``(P, L)``; computed once, from the pairs' digits."""
        if self._texts is None:
            table, lengths = word_table(DIGIT_NAMES, DEFAULT_PAD + DEFAULT_ALPHABET, self.config.text_length)
            gen = torch.Generator().manual_seed(self.config.text_seed)
            labels = self.labels()
            self._texts = {}
            for name in SPLITS:  # a fixed order, so each split's offsets depend only on the seed and the pairs
                u = torch.rand(labels[name].shape[0], generator=gen)  # (P,) uniform: every offset that fits
                self._texts[name] = spell(table, lengths, labels[name], u)  # (P, L)
        return self._texts

    def load(self) -> dict[str, Split]:
        splits = super().load()  # {split: {"mnist", "svhn", "label"}}
        for name, text in self.texts().items():
            splits[name]["text"] = text
        return splits

    def record(self) -> dict[str, Tensor]:
        """The pairs and file fingerprints of ``mnist_svhn``, plus each text's offset (uint8 ``(P,)``)."""
        record = super().record()
        for name, text in self.texts().items():
            record[f"{name}/text_offset"] = (text != 0).to(torch.uint8).argmax(1).to(torch.uint8)  # first letter
        return record


@hookimpl
def register_datasets(register):
    register("mnist_svhn_text", MnistSvhnTextDataset)
