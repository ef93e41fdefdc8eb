"""The cross-modal probe of training (``train.crossmodal_every``): accuracy and coherence on a
fixed validation subset, cheap enough to log every few epochs, measured as ``mmgen eval`` does."""

from __future__ import annotations

import torch
from torch import Tensor

from mmgen.eval.class_spaces import crossmodal_metrics, crossmodal_setup
from mmgen.eval.judge import as_unit_float, preserved_rng
from mmgen.model.inputs import prepare_fixed
from mmgen.plugin.model import Model


class CrossModalProbe:
    """``probe()`` -> ``{"val/accuracy s->t": ..., "val/coherence s->t": ...}`` for the run's model."""

    def __init__(self, model: Model, splits: dict[str, dict[str, Tensor]], examples: int,
                 device: torch.device, data_name: str, class_field: str | None,
                 present: dict[str, Tensor] | None = None):
        self.model, self.device = model, device
        self.setup = crossmodal_setup(model, splits["train"], class_field, device, data_name)
        val = splits["val"]
        self.truths = {f: val[f][:examples].to(device) for f in self.setup.fields()}
        # Seed 0 on the CPU: the same binarization on every device.
        self.inputs = prepare_fixed(model.modalities, {n: val[n][:examples] for n in model.names}, 0, device)
        self.real = {t: as_unit_float(val[t][:examples]).to(device) for t in self.setup.images}  # never binarized
        # As in `mmgen eval`: an accuracy from s counts only the examples that have s (data.missing_at_eval).
        self.present = None if present is None else {n: present[n][:examples].to(device) for n in model.names}
        sizes = [space.size for space in self.setup.spaces.values()] or [1]
        self.per_class = max(1, examples // max(sizes))

    def __call__(self) -> dict[str, float]:
        if not self.setup.targets and not self.setup.sources:
            return {}
        with preserved_rng(self.device):  # the probe must not change the training's random stream
            metrics = crossmodal_metrics(self.model, self.setup, self.inputs, self.truths, self.present,
                                         self.per_class, seed=0, real=self.real)
        return {f"val/{k}": v for k, v in metrics.items() if v is not None and not k.endswith(" per class")}
