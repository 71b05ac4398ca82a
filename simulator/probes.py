"""Failback probes for simulated devices: TCP, or TCP and mutual TLS.

A device's core asks for a probe of the preferred endpoint while it is on
the other one; the fleet's probes are real connections to the region (so a
fleet's probing load on a recovering region is real too). Host names are
resolved through the system resolver and kept for a few seconds, as a
device's stub resolver cache would. The MQTT depth is carried out by the
runner with a CONNECT of its own (see driver.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.settings import TlsSettings

_ADDRESS_CACHE_S = 5.0


class ProbeError(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Prober:
    def __init__(self) -> None:
        self._addresses: dict[str, tuple[str, float]] = {}

    async def _address(self, host: str) -> str:
        cached = self._addresses.get(host)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, family=socket.AF_INET)
        except OSError as exc:
            raise ProbeError(FailureKind.RESOLVE, str(exc)) from None
        address = str(infos[0][4][0])
        self._addresses[host] = (address, time.monotonic() + _ADDRESS_CACHE_S)
        return address

    async def probe(
        self, endpoint: Endpoint, context: ssl.SSLContext | None, timeout_s: float
    ) -> None:
        """Returns if the endpoint answers to this depth; raises ProbeError."""
        try:
            async with asyncio.timeout(timeout_s):
                address = await self._address(endpoint.host)
                if context is None:
                    await _tcp_connect(address, endpoint.port)
                    return
                _, writer = await asyncio.open_connection(
                    address, endpoint.port, ssl=context, server_hostname=endpoint.host
                )
        except TimeoutError:
            raise ProbeError(FailureKind.TIMEOUT, f"no answer in {timeout_s:g} s") from None
        except ConnectionRefusedError as exc:
            raise ProbeError(FailureKind.REFUSED, str(exc)) from None
        except ssl.SSLError as exc:
            raise ProbeError(FailureKind.TLS, exc.reason or str(exc)) from None
        except OSError as exc:
            raise ProbeError(FailureKind.OTHER, str(exc)) from None
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _tcp_connect(address: str, port: int) -> None:
    """A bare non-blocking connect: a fleet probes thousands of times a
    second, and streams cost several times more per probe."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    finally:
        sock.close()


def tls_probe_context(tls: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
