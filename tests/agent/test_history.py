"""Failover counters survive a restart (issue 12, smaller list)."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from iotdr.agent.core.machine import History, Machine
from iotdr.agent.history import FILE_NAME, HistoryWriter, load_history
from tests.agent.world import make_settings


def test_counters_round_trip_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        HistoryWriter(str(tmp_path / "state")).save(
            History(failovers=3, failbacks=2, last_failover_s=0.25)
        )
    finally:
        os.umask(old)
    path = tmp_path / "state" / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    history = load_history(str(tmp_path / "state"))
    assert history == History(failovers=3, failbacks=2, last_failover_s=0.25)
    snapshot = Machine(make_settings(), random.Random(0), history=history).snapshot()
    assert (snapshot.failovers, snapshot.failbacks, snapshot.last_failover_s) == (3, 2, 0.25)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe", b"[]", b'{"failovers": "x"}', b"{" * 9000])
def test_damaged_history_starts_from_zero(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    assert load_history(str(tmp_path)) == History()


def test_unwritable_history_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    HistoryWriter(str(tmp_path / "state")).save(History(failovers=1))  # logs, does not raise
