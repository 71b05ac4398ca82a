"""Failback probes for simulated devices: TCP, or TCP and mutual TLS.

A device's core asks for a probe of the preferred endpoint while it is on
the other one; the fleet's probes are real connections to the region (so a
fleet's probing load on a recovering region is real too). Host names are
resolved through the system resolver and kept for a few seconds, as a
device's stub resolver cache would. The MQTT depth is carried out by the
runner with a CONNECT of its own (see driver.py).

A TLS probe runs in a thread of its own, with a blocking socket: a fleet
in a stability window probes about once a second per device, and done in
the runner's one event loop (asyncio's SSL transport, in Python) 1,000
handshakes a second held that loop up to 3 s at a time, so every other
device's timers and answers came late: the real runs of a moved CNAME
bunched their moves into fewer seconds than the devices' cores had asked
for (README, "Real vs virtual"). In a thread the handshake is OpenSSL's,
outside the GIL, and the loop only waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.settings import TlsSettings

_ADDRESS_CACHE_S = 5.0
# Handshakes in flight at once. Each waits mostly on the region's answer;
# more threads than this only queue in the kernel and the brokers.
TLS_THREADS = 32


class ProbeError(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Prober:
    def __init__(self) -> None:
        self._addresses: dict[str, tuple[str, float]] = {}
        self._tls = ThreadPoolExecutor(TLS_THREADS, thread_name_prefix="tls-probe")

    def close(self) -> None:
        self._tls.shutdown(wait=False, cancel_futures=True)

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
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    self._tls, _tls_handshake, address, endpoint, context, timeout_s
                )
        except TimeoutError:
            raise ProbeError(FailureKind.TIMEOUT, f"no answer in {timeout_s:g} s") from None
        except ConnectionRefusedError as exc:
            raise ProbeError(FailureKind.REFUSED, str(exc)) from None
        except ssl.SSLError as exc:
            raise ProbeError(FailureKind.TLS, exc.reason or str(exc)) from None
        except OSError as exc:
            raise ProbeError(FailureKind.OTHER, str(exc)) from None


def _tls_handshake(
    address: str, endpoint: Endpoint, context: ssl.SSLContext, timeout_s: float
) -> None:
    """TCP and a mutual-TLS handshake, blocking (in a probe thread); raises
    what asyncio's would (a socket timeout is a TimeoutError)."""
    with (
        socket.create_connection((address, endpoint.port), timeout=timeout_s) as sock,
        context.wrap_socket(sock, server_hostname=endpoint.host) as tls,
    ):
        # close_notify, as asyncio's stream sent on close, without waiting
        # for the region's own (non-blocking: it cannot wait).
        tls.setblocking(False)
        with contextlib.suppress(OSError, ssl.SSLError):
            tls.unwrap()


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
