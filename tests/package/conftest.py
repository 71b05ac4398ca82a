"""Fixtures for the package tests: the .deb and a cached Debian root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb() -> Path:
    """dist/iotdr-agent_VERSION_ARCH.deb, built from this checkout."""
    subprocess.run([REPO / "scripts/build-deb"], check=True, timeout=600)
    built = sorted((REPO / "dist").glob("iotdr-agent_*.deb"), key=lambda p: p.stat().st_mtime)
    assert built, "scripts/build-deb made no package"
    return built[-1]


@pytest.fixture(scope="session")
def debian_root() -> Path:
    """A minimal bookworm with systemd, made once per checkout (debootstrap)."""
    if os.geteuid() != 0:
        pytest.fail("the package test needs root: debootstrap, systemd-nspawn, namespaces")
    root = Path(os.environ.get("IOTDR_SYSTEMD_ROOT", REPO / "build/systemd-root"))
    subprocess.run([REPO / "scripts/systemd-root", root], check=True, timeout=1200)
    return root
