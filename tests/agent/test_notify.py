"""sd_notify over a real Unix datagram socket, as systemd listens for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotdr.agent import notify
from iotdr.agent.config_files import load
from iotdr.agent.core.errors import MachineError
from iotdr.agent.core.events import TimerFired, TimerName
from iotdr.agent.daemon import Daemon, EndpointFilter


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5.0)
        yield sock


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False


def test_fields_arrive_as_one_datagram(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    assert notify.notify("READY=1", "STATUS=connected to a:8883 (primary)")
    assert listener.recv(4096) == b"READY=1\nSTATUS=connected to a:8883 (primary)"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"iotdr-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_reloading_carries_the_monotonic_clock(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    assert notify.reloading()
    fields = listener.recv(4096).decode().split("\n")
    assert fields[0] == "RELOADING=1"
    key, value = fields[1].split("=")
    assert key == "MONOTONIC_USEC" and int(value) > 0


def test_a_vanished_manager_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify.notify("READY=1") is False
    assert "cannot notify" in caplog.text


def test_unsupported_socket_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert notify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("20000000", None, 10.0),
        ("20000000", "self", 10.0),
        ("20000000", "other", None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for key, value in (
        ("WATCHDOG_USEC", usec),
        ("WATCHDOG_PID", {"self": str(os.getpid()), "other": "1", None: None}[pid]),
    ):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert notify.watchdog_interval() == expected


def test_an_exception_escaping_the_core_stops_the_watchdog(
    listener: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The daemon's real core and liveness check on a real event loop: an
    event posted the way adapters post them (a loop callback) makes the
    core raise (here a documented MachineError: an event before Started;
    any bug escaping `Machine.handle` leaves the same trace). The loop
    carries on, as asyncio does after a failed callback, but the watchdog
    sends no more pings, so systemd's WatchdogSec= restarts the agent."""
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    config = tmp_path / "agent.yaml"
    config.write_text(
        "client_id: dev-1\n"
        "tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}\n"
        "endpoints: {primary: {host: h.example}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    daemon = Daemon(load([config]), config, tmp_path, EndpointFilter())
    escaped: list[BaseException] = []
    received: list[bytes] = []
    listener.setblocking(False)

    def drain() -> None:  # as systemd reads them, so no send ever waits
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(listener.recv(4096))

    async def scenario() -> notify.Watchdog:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: escaped.append(context["exception"]))
        loop.add_reader(listener.fileno(), drain)
        watchdog = notify.Watchdog(loop, 0.01, daemon.core_alive)
        try:
            watchdog.start()
            while watchdog.pings < 3:
                await asyncio.sleep(0.01)
            loop.call_soon(daemon._dispatch, TimerFired(now=loop.time(), timer=TimerName.DNS))
            failed_at = watchdog.pings
            # At most one ping may be on its way; a watchdog that goes on
            # shows it within a few dozen (a count, not a clock).
            while not watchdog.stopped and watchdog.pings < failed_at + 50:
                await asyncio.sleep(0.01)
            assert watchdog.stopped and watchdog.pings <= failed_at + 1
        finally:
            watchdog.cancel()
            loop.remove_reader(listener.fileno())
        return watchdog

    watchdog = asyncio.run(asyncio.wait_for(scenario(), 60))  # the bound only stops a hang
    drain()
    assert [type(exc) for exc in escaped] == [MachineError]
    assert not daemon.core_alive()
    assert "no more watchdog pings" in caplog.text
    assert received == [b"WATCHDOG=1"] * watchdog.pings and watchdog.pings >= 3
