"""The control socket answers garbage with an error, never a traceback
(issue 12 item 8). A real server on a real Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotdr.agent.control import ControlServer, query_status
from iotdr.agent.core.settings import DEFAULT_CONTROL_SOCKET
from iotdr.agent.main import main


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path / "agent.sock") as path:
        yield path


@contextlib.contextmanager
def serving(socket_path: Path) -> Iterator[str]:
    """A real ControlServer on `socket_path`, its loop in a thread."""
    path = str(socket_path)
    loop = asyncio.new_event_loop()
    control = ControlServer(path, lambda: {"state": "connected"})
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(control.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(control.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield path
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def ask(path: str, request: bytes) -> dict[str, Any] | None:
    """Send `request`, read the answer; None if the server closed on us."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(path)
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            return None
    return json.loads(data) if data else None


@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"\xff\xfe\x00status\n", "not UTF-8"),
        (b"x" * (10 * 1024 * 1024) + b"\n", "longer than"),
        (b"shutdown now\n", "unknown request"),
        (b"\n", "unknown request"),
    ],
)
def test_garbage_gets_an_error_not_a_traceback(
    server: str, caplog: pytest.LogCaptureFixture, request_bytes: bytes, problem: str
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = ask(server, request_bytes)
    # A 10 MB line may be cut off by the server's close before it is all
    # sent; then there is no answer to read, which is fine. Otherwise it is
    # an error in JSON.
    if answer is not None:
        assert problem in answer["error"]
    else:
        assert len(request_bytes) > 1024
    assert query_status(server) == {"state": "connected"}
    gc.collect()  # Python 3.11 logs a failed handler task when it is collected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("command", [["status", "--json"], ["metrics"]])
def test_a_broken_configuration_falls_back_to_the_default_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """The agent runs on its old configuration while /etc/iotdr/agent.yaml
    is being edited: status and metrics still reach it, and say how."""
    broken = tmp_path / "etc/iotdr/agent.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("client_id: [unclosed\n")
    with serving(tmp_path / DEFAULT_CONTROL_SOCKET.lstrip("/")):
        code = main(["--root", str(tmp_path), *command])
    out, err = capsys.readouterr()
    assert code == 0
    assert len(err.strip().splitlines()) == 1
    assert str(broken) in err and DEFAULT_CONTROL_SOCKET in err
    if command[0] == "status":
        assert json.loads(out) == {"state": "connected"}
    else:
        assert "iotdr_agent_up 1" in out.splitlines()
