"""The control socket: a Unix socket (mode 0600) answering status queries.

Protocol: the client sends one line (`status`), the agent answers one line
of JSON and closes. Only the agent's own user (root or the service user)
can connect, because the socket file is created with mode 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

StatusSource = Callable[[], dict[str, Any]]


class ControlServer:
    def __init__(self, path: str, status: StatusSource) -> None:
        self._path = Path(path)
        self._status = status
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        old = os.umask(0o177)  # born 0600: no window where others could connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self._path))
        finally:
            os.umask(old)
        os.chmod(self._path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await asyncio.wait_for(reader.readline(), 5.0)).decode().strip()
            if request == "status":
                answer: dict[str, Any] = self._status()
            else:
                answer = {"error": f"unknown request {request!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def query_status(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Ask a running agent for its status (blocking; for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"status\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer
