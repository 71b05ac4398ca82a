"""Prometheus text over HTTP from the daemon (`metrics.listen`, off by default).

A few dozen lines of asyncio, not a web framework: one request per
connection (`Connection: close`), `GET`/`HEAD /metrics` only, the request
head bounded in size and time. The text is `metrics.render` of the same
status document the control socket answers, so the port and the
`iotdr-agent metrics` file say the same thing. Bind it to loopback (or a
management network): it names the device and its endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from iotdr.agent.metrics import render

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD_BYTES = 8192
_HEAD_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class MetricsServer:
    def __init__(self, host: str, port: int, status: Callable[[], dict[str, Any]]) -> None:
        self._host = host
        self._port = port
        self._status = status
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_HEAD_BYTES
        )

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the kernel's for port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            code, body, head_only = await self._answer(reader)
            headers = [
                f"HTTP/1.1 {code} {_REASONS[code]}",
                f"Content-Type: {CONTENT_TYPE if code == 200 else 'text/plain; charset=utf-8'}",
                f"Content-Length: {len(body)}",
                "Connection: close",
            ]
            if code == 405:
                headers.append("Allow: GET, HEAD")
            writer.write("\r\n".join(headers).encode() + b"\r\n\r\n")
            if not head_only:
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that went away or never finished its request
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        too_large = 400, b"request head too large\n", False
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT_S):
                request = await reader.readline()
                size = len(request)
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    size += len(line)  # headers: nothing in them changes the answer
                    if size > MAX_HEAD_BYTES:
                        return too_large
        except ValueError:  # the stream's limit: one line longer than a whole head
            return too_large
        parts = request.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"not an HTTP request\n", False
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", False
        if target.split("?", 1)[0] != "/metrics":
            return 404, b"metrics are at /metrics\n", method == "HEAD"
        return 200, render(self._status()).encode(), method == "HEAD"
