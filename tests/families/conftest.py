"""Every family test may build a model over three modalities: the three-fields data set is registered for each
module (``tests/support/three_fields.py``)."""

import pytest

from tests.support.three_fields import three_fields


@pytest.fixture(scope="module", autouse=True)
def _three_fields():
    with three_fields():
        yield
