"""Failback probes: is the preferred endpoint healthy, to a given depth?

tcp: a TCP connection opens. tls: plus a mutual-TLS handshake that verifies
the server name. mqtt: plus an MQTT CONNECT accepted (a CRT client under a
probe client id, so the live session elsewhere is not disturbed; it counts
against the CONNECT rate limit of that id, which a probe interval of a
second or more respects).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from awscrt import io, mqtt5

from iotdr.agent.cloud_mqtt import Transport, error_name
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.failures import FailureKind, classify_connect_error
from iotdr.agent.core.settings import ProbeDepth, Settings


class ProbeFailedError(Exception):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.tls.ca_file)
    context.load_cert_chain(settings.tls.cert_file, settings.tls.key_file)
    return context


async def _tcp_or_tls(endpoint: Endpoint, context: ssl.SSLContext | None) -> None:
    try:
        _, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=endpoint.host if context else None,
        )
    except ConnectionRefusedError as exc:
        raise ProbeFailedError(FailureKind.REFUSED, str(exc)) from None
    except ssl.SSLError as exc:
        raise ProbeFailedError(FailureKind.TLS, exc.reason or str(exc)) from None
    except OSError as exc:
        raise ProbeFailedError(FailureKind.OTHER, str(exc)) from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def _mqtt(
    endpoint: Endpoint, settings: Settings, transport: Transport, crt_tls: io.ClientTlsContext
) -> None:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str | None] = loop.create_future()

    def settle(result: str | None) -> None:
        def resolve() -> None:
            if not outcome.done():
                outcome.set_result(result)

        loop.call_soon_threadsafe(resolve)

    options = transport.client_options(settings, crt_tls, endpoint, f"{settings.client_id}-probe")
    options.on_lifecycle_event_connection_success_fn = lambda _d: settle(None)
    options.on_lifecycle_event_connection_failure_fn = lambda d: settle(error_name(d.exception))
    client = mqtt5.Client(options)
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
    context: ssl.SSLContext,
    crt_tls: io.ClientTlsContext,
) -> None:
    """Return if healthy; raise ProbeFailedError saying why not."""
    timeout = settings.failback.probe_timeout_s
    try:
        async with asyncio.timeout(timeout):
            if depth is ProbeDepth.TCP:
                await _tcp_or_tls(endpoint, None)
            elif depth is ProbeDepth.TLS:
                await _tcp_or_tls(endpoint, context)
            else:
                await _mqtt(endpoint, settings, transport, crt_tls)
    except TimeoutError:
        raise ProbeFailedError(FailureKind.TIMEOUT, f"no answer in {timeout} s") from None
