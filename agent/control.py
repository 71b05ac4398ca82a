"""The control socket: a Unix socket (mode 0600) answering status queries.

Protocol: the client sends one line (`status`), the agent answers one line
of JSON and closes. Anything else (an unknown word, bytes that are not
UTF-8, a line longer than `MAX_REQUEST_BYTES`, no line within the timeout)
is answered with `{"error": ...}` or a close, never a traceback. Only the
agent's own user (root or the service user) can connect, because the
socket file is created with mode 0600.
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
# Requests are a word; a longer line is refused before it is read whole.
MAX_REQUEST_BYTES = 1024
_REQUEST_TIMEOUT_S = 5.0


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
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._path), limit=MAX_REQUEST_BYTES
            )
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
            answer = await self._answer(reader)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), _REQUEST_TIMEOUT_S)
        except ValueError:  # the stream's limit: the line is too long
            return {"error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            request = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return {"error": "request is not UTF-8 text"}
        if request == "status":
            return self._status()
        return {"error": f"unknown request {request[:60]!r}"}


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
