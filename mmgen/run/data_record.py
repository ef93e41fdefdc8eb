"""``data_record.safetensors``: how the data set assembled its examples when a run started.

A data set that builds its examples from others (MNIST-SVHN matches images of one digit by a seed)
says what it chose through ``Dataset.record()``. Training saves that in the new run directory;
``check_data_record`` then refuses a data set that now assembles other examples (another seed,
other files), so a run is never scored on data it was not trained on. Runs without the file (older
runs, data sets with an empty record) are left alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from mmgen.errors import DataError
from mmgen.plugin.dataset import Dataset
from mmgen.storage.tensors import load_tensors, save_tensors

DATA_RECORD = "data_record.safetensors"
SHOWN = 6  # differing entries named in the error before "and N more"


def data_record_path(run_path: Path) -> Path:
    return Path(run_path) / DATA_RECORD


def save_data_record(run_path: Path, dataset: Dataset | None) -> bool:
    """Write the data set's record into the run directory (atomically, no pickle); False when it has none."""
    record = dataset.record() if dataset is not None else {}
    if not record:
        return False
    save_tensors(data_record_path(run_path), record, {"dataset": type(dataset).__name__})
    return True


def remove_data_record(run_path: Path) -> None:
    """Remove the record of a run that is being removed because it never wrote a checkpoint."""
    data_record_path(run_path).unlink(missing_ok=True)


def differing(saved: dict[str, Tensor], now: dict[str, Tensor]) -> list[str]:
    """Names of the entries that are in one record only, or differ in dtype, shape or values."""
    return [name for name in sorted(saved.keys() | now.keys())
            if name not in saved or name not in now or saved[name].dtype != now[name].dtype
            or saved[name].shape != now[name].shape or not torch.equal(saved[name], now[name])]


def check_data_record(run_path: Path, dataset: Dataset) -> None:
    """Raise one DataError when the run's saved record differs from what ``dataset`` assembles now;
    nothing when the run has no record or the data set records nothing."""
    path = data_record_path(run_path)
    if not path.is_file():
        return
    now = dataset.record()
    if not now:
        return
    saved, _meta = load_tensors(path)
    names = differing(saved, now)
    if names:
        shown = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
        raise DataError(
            f"the data set assembles other examples than {path} records ({shown} differ): another data seed or "
            "other data files than the run was trained on",
            hint="use the run's own data settings (its recipe.json) and the data files it was trained on",
        )
