"""The daemon and its service manager, over a real notify socket: READY,
STATUS, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING/READY around SIGHUP,
STOPPING. (The same under a real systemd: tests/package.)"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.testbed import Testbed as TwoRegions

pytestmark = pytest.mark.testbed


def _until(sock: socket.socket, field: str, seen: list[str]) -> list[str]:
    """Datagrams up to and including the first that holds `field`."""
    got: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        got.append(message)
        seen.append(message)
        if field in message.split("\n"):
            return got


def test_watchdog_pings_and_reload_notifications(testbed: TwoRegions, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    seen: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30.0)
        # WATCHDOG_PID is left out: the agent runs under `ip netns exec`,
        # so its pid is not known before it starts (systemd sets it).
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        with AgentRunner(testbed, env=env) as agent:
            ready = _until(sock, "READY=1", seen)[-1].split("\n")
            assert any(f.startswith("STATUS=") for f in ready)
            # Pinged again and again from the event loop, every 0.5 s.
            for _ in range(3):
                _until(sock, "WATCHDOG=1", seen)
            agent.wait_connected("region-a")
            agent.signal(signal.SIGHUP)
            reload = _until(sock, "RELOADING=1", seen)[-1].split("\n")
            assert any(f.startswith("MONOTONIC_USEC=") for f in reload)
            _until(sock, "READY=1", seen)
            _until(sock, "WATCHDOG=1", seen)  # still alive after the reload
            agent.signal(signal.SIGTERM)
            _until(sock, "STOPPING=1", seen)
            assert agent.process is not None and agent.process.wait(30.0) == 0
    assert any("STATUS=connected" in m for m in seen)
