"""Reports and errors are put together when read, and read as the
f-strings they replace did (every message of the core's table and
stateful tests was compared against them when the change was made)."""

from __future__ import annotations

import random

import pytest

from iotdr.agent.core.commands import Connect, Level, Report
from iotdr.agent.core.events import (
    ConnectionLost,
    ConnectSucceeded,
    DnsAnswered,
    Started,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import Machine
from iotdr.agent.core.text import Text
from tests.agent.world import PRIMARY, make_settings

TXT = '{"primary": "region-a", "secondary": "region-b"}'
SWAPPED = '{"primary": "region-b", "secondary": "region-a"}'


@pytest.mark.parametrize("detail", ["", "reset by peer", "  ", "x: ", ": :"])
def test_a_text_reads_as_the_f_string(detail: str) -> None:
    kind, took = FailureKind.TIMEOUT, 0.0123456
    assert str(Text("{.value}: {}: {}", kind, PRIMARY, detail, strip=": ")) == (
        f"{kind.value}: {PRIMARY}: {detail}".rstrip(": ")
    )
    assert str(Text("lost {}: {.value} {}", PRIMARY, kind, detail, strip=None)) == (
        f"lost {PRIMARY}: {kind.value} {detail}".rstrip()
    )
    assert str(Text("{} in {:.0f} ms ({:.1f} s)", detail, took * 1000, took)) == (
        f"{detail} in {took * 1000:.0f} ms ({took:.1f} s)"
    )


def test_texts_are_equal_when_they_read_the_same() -> None:
    assert Text("a {}", 1) == Text("a 1") != Text("a 2")
    assert hash(Text("a {}", 1)) == hash(Text("a 1"))
    assert repr(Text("a {}", 1)) == "Text('a 1')"


def _connected(machine: Machine) -> list[Report]:
    machine.handle(Started(now=0.0))
    machine.handle(DnsAnswered(now=0.1, target=PRIMARY.host, ttl=5, txt=TXT))
    commands = machine.handle(TimerFired(now=0.6, timer=TimerName.RECONNECT))
    connect = next(c for c in commands if isinstance(c, Connect))
    commands = machine.handle(ConnectSucceeded(now=10.0, attempt=connect.attempt))
    return [c for c in commands if isinstance(c, Report)]


def test_a_report_reads_as_of_when_it_was_made() -> None:
    machine = Machine(make_settings(), random.Random(1))
    (report,) = _connected(machine)
    # The TXT record now calls the same region secondary: the report
    # still says what was true when it was made.
    machine.handle(DnsAnswered(now=11.0, target=PRIMARY.host, ttl=5, txt=SWAPPED))
    assert report.level is Level.INFO
    assert report.message == f"connected to {PRIMARY} (region region-a, primary) (start)"


def test_last_error_reads_as_before() -> None:
    machine = Machine(make_settings(), random.Random(1))
    _connected(machine)
    assert machine.snapshot().last_error is None
    lost = ConnectionLost(now=20.0, attempt=1, failure=FailureKind.CLOSED)
    reports = [c for c in machine.handle(lost) if isinstance(c, Report)]
    assert machine.snapshot().last_error == f"closed: {PRIMARY}"
    assert [r.message for r in reports] == [f"lost {PRIMARY} (region region-a, primary): closed"]
