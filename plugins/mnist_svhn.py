"""MNIST-SVHN (Shi et al. 2019): pairs of an MNIST and an SVHN image of the same digit.

Fields ``mnist`` uint8 ``(N, 1, 28, 28)``, ``svhn`` uint8 ``(N, 3, 32, 32)`` and ``label`` int64
``(N,)``. MNIST is read from ``<root>/MNIST/raw`` and SVHN from ``<root>/SVHN/{train,test}_32x32.mat``
(torchvision's files), downloaded through torchvision only when ``data.download`` allows. Each image of a
class is in ``data.pairs_per_instance`` pairs (20, as the MMVAE README and the MoPoE code), matched by
``data.match_seed``; training pairs come from the training files, test pairs from the test files, and
validation pairs from images held out of both training files before pairing. Everything but the name
comes from ``mmgen.MnistSvhnDataset`` (``mmgen/data/svhn.py``), which a plugin may extend, as
``mmgen-text``'s ``mnist_svhn_text`` does; the pairs are saved in each run (``Dataset.record``).
"""

from __future__ import annotations

from mmgen import MnistSvhnDataset, hookimpl


@hookimpl
def register_datasets(register):
    register("mnist_svhn", MnistSvhnDataset)
