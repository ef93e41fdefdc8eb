"""Two data paths, one trainer: the split on the device or a DataLoader with workers give the same
batches for the same seed; a data set may read per example; auto says which path it chose."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file

from mmgen import IdxImageDataset, hookimpl
from mmgen.data.sources import DataSource, TensorReader
from mmgen.testing import registered_plugin
from mmgen.train.batches import InMemoryBatches, StreamingBatches
from mmgen.train.distributed import Distributed
from mmgen.train.session import train_recipe


def weights(run: Path) -> dict:
    return load_file(run / "last.safetensors")


@pytest.fixture(scope="module")
def in_memory(tiny_recipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paths") / "memory"
    train_recipe(tiny_recipe, ["train.epochs=2", "data.on_device=true"], out, "cpu", resume=False)
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_gives_the_same_training_bit_for_bit(tiny_recipe, tmp_path, in_memory, workers):
    out = tmp_path / "stream"
    train_recipe(tiny_recipe, ["train.epochs=2", "data.on_device=false", f"data.workers={workers}"], out, "cpu",
                 resume=False)
    a, b = weights(in_memory), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_two_paths_yield_the_same_batches_and_shards():
    split = {"image": torch.arange(50).reshape(50, 1, 1, 1).repeat(1, 1, 2, 2).to(torch.uint8),
             "label": torch.arange(50) % 10}
    order = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    memory = InMemoryBatches(split, ["image", "label"], torch.device("cpu"))
    stream = StreamingBatches(TensorReader(split, ["image", "label"]), torch.device("cpu"), workers=0)
    last_of_three = Distributed(rank=2, world=3).shard  # the shards of 8 are 3, 3 and 2; of the last 2: 1, 1, 0
    for shard, weights in ((None, [1.0] * 5), (last_of_three, [0.75] * 4 + [0.0])):
        got = [list(p.epoch(order, 8, start=2, shard=shard)) for p in (memory, stream)]
        assert len(got[0]) == len(got[1]) == 5  # 7 batches of 8 (the last of 2), from the third on
        for (i1, b1, n1), (i2, b2, n2) in zip(*got):
            assert torch.equal(i1, i2) and n1 == n2 and all(torch.equal(b1[k], b2[k]) for k in b1)
        assert [w for _, _, w in got[0]] == weights  # n_rank * world / n: DDP's mean is the global batch's
        assert got[0][-1][0].numel() == (2 if shard is None else 1)  # an empty shard steps on one, weight 0


class PerExampleDigits(IdxImageDataset):
    """Reads the training split one example at a time, as a folder of files would be read."""

    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label"}
    reads = 0

    def reader(self, split):
        if split != "train":
            return None
        dataset = self

        class Reader:
            def __init__(self):
                self.data = IdxImageDataset.load(dataset)["train"]

            def __len__(self):
                return self.data["label"].shape[0]

            def __getitem__(self, i):
                PerExampleDigits.reads += 1
                return {"image": self.data["image"][i], "label": self.data["label"][i]}

        return Reader()

    def load(self):
        splits = super().load()
        del splits["train"]  # only per-example reads of the training split
        return splits


@hookimpl
def _register(register):
    register("per_example_digits", PerExampleDigits)


def test_a_data_set_that_reads_per_example_streams_and_trains(tiny_recipe, tmp_path, in_memory, cli):
    with registered_plugin("mmgen-test-per-example", register_datasets=_register):
        result = cli("train", tiny_recipe, "train.epochs=2", "data.kind=per_example_digits", "data.on_device=false",
                     "data.workers=0", "--out", tmp_path / "run", "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert "streams through a DataLoader with 0 worker(s) (data.on_device)" in " ".join(result.stderr.split())
        assert PerExampleDigits.reads >= 2 * 250  # every training example read in each of the two epochs
        a, b = weights(in_memory), weights(tmp_path / "run")
        assert all(torch.equal(a[k], b[k]) for k in a)  # the same batches as the split kept whole


def test_auto_says_what_it_chose(cli, tiny_recipe, tmp_path):
    result = cli("train", tiny_recipe, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "stays on cpu (auto: at most a quarter of the" in " ".join(result.stderr.split())


def test_a_data_source_reports_sizes_and_materializes_readers(tiny_mnist_root):
    from mmgen import get_registry

    mnist = get_registry().datasets["mnist"].cls
    source = DataSource(mnist(mnist.Config(kind="mnist", root=str(tiny_mnist_root), download=False, val_size=50)))
    assert source.nbytes("train", ["image", "label"]) == 250 * 784 + 250 * 8
    assert source.tensors("train", ["label"])["label"].shape == (250,)
