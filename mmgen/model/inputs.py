"""Fixed model inputs: stored examples prepared once on the CPU with a seeded generator.

Validation, evaluation, ``--given`` values and pictures all score the same draw on every device
(a cuda generator draws other numbers than a CPU one), so any binarization happens here, on the
CPU, before the tensors move to the device. Training batches are prepared on the device instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from mmgen.plugin.modality import Modality


def prepare_fixed(modalities: Mapping[str, Modality], raw: Mapping[str, Tensor], seed: int,
                  device: torch.device | str) -> dict[str, Tensor]:
    """``{name: stored (N, *event)}`` -> ``{name: prepared (N, *event) on device}``.

    One generator seeded by ``seed`` serves the modalities in the order of ``raw``.
    """
    generator = torch.Generator().manual_seed(seed)
    return {name: modalities[name].prepare(x.cpu(), generator).to(device) for name, x in raw.items()}
