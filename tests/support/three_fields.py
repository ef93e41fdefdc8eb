"""A dataset kind with three modalities (image, label and a second label, "tag"), for family tests that
build models over three modalities; it is never loaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from mmgen import Dataset, hookimpl
from mmgen.testing import registered_plugin

KIND = "three-fields"


class ThreeFields(Dataset):
    """Image, label and tag: three modalities, seven subsets (never loaded)."""

    fields: ClassVar[dict[str, str]] = {"image": "image", "label": "label", "tag": "label"}

    def load(self):
        raise NotImplementedError("the tests build models only")


@hookimpl
def _register_datasets(register):
    register(KIND, ThreeFields)


@contextmanager
def three_fields() -> Iterator[None]:
    """``data.kind = "three-fields"`` registered for the block."""
    with registered_plugin("mmgen-test-three-fields", register_datasets=_register_datasets):
        yield
