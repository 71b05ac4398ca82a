"""Fixtures for tests against a real two-region testbed (root needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotdr.testbed.testbed import Testbed as TwoRegions


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[TwoRegions]:
    if os.geteuid() != 0:
        pytest.fail("testbed tests need root: network namespaces, iptables, port 53")
    with TwoRegions.up(tmp_path / "tb") as tb:
        yield tb
