"""The daemon's optional metrics port: a real server on a loopback port,
asked with the standard library's HTTP client and with raw bytes."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import parse_settings
from iotdr.agent.metrics import render
from iotdr.agent.metrics_server import CONTENT_TYPE, MAX_HEAD_BYTES, MetricsServer

STATUS: dict[str, Any] = {"state": "connected", "connected": True, "failovers": 2}


@pytest.fixture
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    server = MetricsServer("127.0.0.1", 0, lambda: dict(STATUS))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield server.port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def get(port: int, method: str, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request(method, path)
    return connection.getresponse()


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_get_metrics_is_the_status_as_prometheus_text(port: int) -> None:
    answer = get(port, "GET", "/metrics")
    assert answer.status == 200
    assert answer.getheader("Content-Type") == CONTENT_TYPE
    body = answer.read().decode()
    assert body == render(STATUS)
    assert "iotdr_agent_up 1" in body.splitlines()
    assert "iotdr_agent_failovers_total 2" in body.splitlines()
    head = get(port, "HEAD", "/metrics")
    assert head.status == 200 and head.read() == b""
    assert head.getheader("Content-Length") == str(len(body))


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [("GET", "/", 404), ("GET", "/metrics/x", 404), ("POST", "/metrics", 405)],
)
def test_other_requests_are_refused(port: int, method: str, path: str, code: int) -> None:
    assert get(port, method, path).status == code


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x16\x03\x01\x00\x05hello\r\n\r\n",  # a TLS client, say
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: xxxxxxxx\r\n" * 1000 + b"\r\n",
    ],
)
def test_garbage_gets_400_not_a_traceback(port: int, request_bytes: bytes) -> None:
    assert raw(port, request_bytes).startswith(b"HTTP/1.1 400 ")
    assert get(port, "GET", "/metrics").status == 200  # and it serves on


def base() -> dict[str, Any]:
    return {
        "client_id": "d",
        "tls": {"ca_file": "a", "cert_file": "b", "key_file": "c"},
        "endpoints": {"primary": {"host": "h"}},
    }


def test_off_by_default() -> None:
    assert parse_settings(base(), "f").metrics.listen is None


@pytest.mark.parametrize("text", ["127.0.0.1:9101", "[::1]:9101", "0.0.0.0:9101"])
def test_listen_addresses(text: str) -> None:
    listen = parse_settings({**base(), "metrics": {"listen": text}}, "f").metrics.listen
    assert listen is not None and str(listen) == text


@pytest.mark.parametrize(
    "text", ["localhost:9101", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":9101", 9101]
)
def test_bad_listen_names_the_key(text: object) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen: must be"):
        parse_settings({**base(), "metrics": {"listen": text}}, "f")
