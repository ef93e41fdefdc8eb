"""When a training loss counts as diverged: not finite, above a ceiling, or a sudden blow-up.

A loss that is finite but absurd (``train.lr=1e6`` reaches about 6e31) must stop training as a
NaN does, before it is saved as the best checkpoint. The rule, checked at every progress sync
(each ``train.log_every`` steps) and on the validation loss:

* the mean loss so far in the epoch is NaN or ±Inf;
* its magnitude exceeds ``train.max_loss`` nats per example;
* after the first epoch, its magnitude exceeds ``train.blowup`` times the magnitude of the
  previous epoch's (training loss for training, validation loss for validation), with 1 nat as
  the floor of that magnitude, when ``train.blowup`` > 0.
"""

from __future__ import annotations

import math


def divergence(means: dict[str, float], max_loss: float, blowup: float, previous_loss: float | None) -> str | None:
    """Why these logged means count as diverged (``"loss=nan"``, ...), or None when they do not."""
    bad = [f"{k}={v}" for k, v in means.items() if not math.isfinite(v)]
    if bad:
        return ", ".join(bad)
    loss = means["loss"] if "loss" in means else means.get("val/loss")
    if loss is None:
        return None
    if abs(loss) > max_loss:
        return f"loss={loss:.4g} is above train.max_loss={max_loss:g}"
    if blowup > 0 and previous_loss is not None and abs(loss) > blowup * max(abs(previous_loss), 1.0):
        return (f"loss={loss:.4g} is more than train.blowup={blowup:g} times the previous epoch's "
                f"{previous_loss:.4g}")
    return None
