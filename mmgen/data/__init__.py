"""Data set building blocks a dataset plugin derives from: the IDX format and torchvision's
MNIST-family layout (local files, a system folder, or a download), with a seeded validation split.

Owns reading data files; registers nothing (the ``mnist`` and ``fashion_mnist`` plugins and the
text plugin's ``mnist_text`` derive their data sets from it). May import: mmgen.errors,
mmgen.config, mmgen.plugin (the Dataset interface), and torchvision at call time.
"""

from mmgen.data.idx import read_idx_gz
from mmgen.data.torchvision_layout import RAW_FILES, IdxImageConfig, IdxImageDataset

__all__ = ["RAW_FILES", "IdxImageConfig", "IdxImageDataset", "read_idx_gz"]
