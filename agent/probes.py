"""Failback probes: is the preferred endpoint healthy, to a given depth?

tcp: a TCP connection opens. tls: plus a mutual-TLS handshake that verifies
the server name. mqtt: plus an MQTT CONNECT accepted (a CRT client under a
probe client id, so the live session elsewhere is not disturbed; it counts
against the CONNECT rate limit of that id, which a probe interval of a
second or more respects).

Probes take the path the connection takes: through `connection.http_proxy`
(HTTP CONNECT) when one is set, and with AWS IoT's ALPN on port 443.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from awscrt import mqtt5

from iotdr.agent.cloud_mqtt import AWS_IOT_MQTT_ALPN, Transport, error_name
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.failures import FailureKind, classify_connect_error
from iotdr.agent.core.settings import HttpProxy, ProbeDepth, Settings


class ProbeFailedError(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class TlsContexts:
    """The probes' TLS contexts: one plain, one with AWS IoT's ALPN for 443.

    Made at the first TLS probe, not at start: the first SSL context a
    process makes costs it 1.5 MiB of RSS for good (OpenSSL initialises),
    and an agent on its preferred region never probes."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._contexts: dict[bool, ssl.SSLContext] = {}

    @staticmethod
    def _make(settings: Settings, *, alpn: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=settings.tls.ca_file)
        # An encrypted key must fail here, never prompt on a terminal.
        context.load_cert_chain(settings.tls.cert_file, settings.tls.key_file, password=lambda: b"")
        if alpn:
            context.set_alpn_protocols([AWS_IOT_MQTT_ALPN])
        return context

    def for_port(self, port: int) -> ssl.SSLContext:
        """ProbeFailedError (TLS) if Python's ssl cannot load the files."""
        alpn = port == 443
        if alpn not in self._contexts:
            try:
                self._contexts[alpn] = self._make(self._settings, alpn=alpn)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ProbeFailedError(
                    FailureKind.TLS, f"cannot load the TLS files for probes: {exc}"
                ) from None
        return self._contexts[alpn]


def tls_context(settings: Settings) -> TlsContexts:
    return TlsContexts(settings)


async def _open(
    endpoint: Endpoint, proxy: HttpProxy | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to the endpoint, tunnelled through the proxy if any."""
    if proxy is None:
        return await asyncio.open_connection(endpoint.host, endpoint.port)
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    target = f"{endpoint.host}:{endpoint.port}"
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # the rest of the proxy's answer
    parts = status.split()
    if len(parts) < 2 or parts[1] != b"200":
        writer.close()
        answer = status.decode(errors="replace").strip() or "no answer"
        raise ProbeFailedError(FailureKind.REFUSED, f"proxy {proxy}: {answer}")
    return reader, writer


async def _tcp_or_tls(
    endpoint: Endpoint, context: ssl.SSLContext | None, proxy: HttpProxy | None
) -> None:
    try:
        _, writer = await _open(endpoint, proxy)
        if context is not None:
            await writer.start_tls(context, server_hostname=endpoint.host)
    except ConnectionRefusedError as exc:
        raise ProbeFailedError(FailureKind.REFUSED, str(exc)) from None
    except ssl.SSLError as exc:
        raise ProbeFailedError(FailureKind.TLS, exc.reason or str(exc)) from None
    except OSError as exc:
        raise ProbeFailedError(FailureKind.OTHER, str(exc)) from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def _mqtt(endpoint: Endpoint, settings: Settings, transport: Transport) -> None:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str | None] = loop.create_future()

    def settle(result: str | None) -> None:
        def resolve() -> None:
            if not outcome.done():
                outcome.set_result(result)

        loop.call_soon_threadsafe(resolve)

    def configure(options: mqtt5.ClientOptions) -> None:
        options.on_lifecycle_event_connection_success_fn = lambda _d: settle(None)
        options.on_lifecycle_event_connection_failure_fn = lambda d: settle(error_name(d.exception))

    client = transport.new_client(
        settings, endpoint, f"{settings.client_id}-probe", configure, persistent=False
    )
    client.start()
    try:
        failure = await outcome
    finally:
        client.stop()
    if failure is not None:
        raise ProbeFailedError(classify_connect_error(failure), failure)


async def probe(
    endpoint: Endpoint,
    depth: ProbeDepth,
    *,
    settings: Settings,
    transport: Transport,
    context: TlsContexts,
) -> None:
    """Return if healthy; raise ProbeFailedError saying why not."""
    timeout = settings.failback.probe_timeout_s
    try:
        async with asyncio.timeout(timeout):
            proxy = settings.connection.http_proxy
            if depth is ProbeDepth.TCP:
                await _tcp_or_tls(endpoint, None, proxy)
            elif depth is ProbeDepth.TLS:
                await _tcp_or_tls(endpoint, context.for_port(endpoint.port), proxy)
            else:
                await _mqtt(endpoint, settings, transport)
    except TimeoutError:
        raise ProbeFailedError(FailureKind.TIMEOUT, f"no answer in {timeout} s") from None
