"""Fixtures for the testbed's own tests: a real testbed per test, always torn down."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from iotdr.testbed import Testbed


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[Testbed]:
    with Testbed.up(tmp_path / "tb") as testbed:
        yield testbed
