"""Many devices' cloud connections on one AWS CRT event loop group.

Each simulated device has its own client certificate, so its own CRT TLS
context; every device shares one event loop group, host resolver and
bootstrap, so ten thousand connections cost a few native threads, not ten
thousand. As in the agent, each Connect makes a fresh MQTT5 client whose
own reconnect loop never fires (the decision core reconnects), and a client
is stopped on its first failure.

Results come back on CRT threads; `post` must be thread-safe (see Inbox).
Nothing here decides anything: failures are classified with the core's
`failures` table and handed to the device's core as events.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from awscrt import io, mqtt5
from awscrt.exceptions import AwsCrtError

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import ConnectFailed, ConnectionLost, ConnectSucceeded, Event
from iotdr.agent.core.failures import classify_connect_error, classify_loss
from iotdr.agent.core.settings import Settings, TlsSettings

_NEVER_MS = 3_600_000  # the CRT's own reconnect: effectively never


def crt_error_name(exc: BaseException | None) -> str:
    if isinstance(exc, AwsCrtError):
        return str(exc.name)
    return type(exc).__name__ if exc is not None else "UNKNOWN"


class CrtPlumbing:
    """The shared native resources: event loop group, resolver, bootstrap."""

    def __init__(self, threads: int) -> None:
        self.event_loop_group = io.EventLoopGroup(threads)
        self.resolver = io.DefaultHostResolver(self.event_loop_group)
        self.bootstrap = io.ClientBootstrap(self.event_loop_group, self.resolver)

    @staticmethod
    def tls_context(tls: TlsSettings) -> io.ClientTlsContext:
        options = io.TlsContextOptions.create_client_with_mtls_from_path(
            tls.cert_file, tls.key_file
        )
        options.override_default_trust_store_from_path(None, tls.ca_file)
        return io.ClientTlsContext(options)


@dataclass(slots=True)
class _Session:
    attempt: int
    client: mqtt5.Client | None = None
    connected: bool = False
    finished: bool = False


PostEvent = Callable[[Event], None]


class CrtConnection:
    """One device's cloud connection: at most one session at a time."""

    def __init__(self, settings: Settings, plumbing: CrtPlumbing, post: PostEvent) -> None:
        self._settings = settings
        self._plumbing = plumbing
        self._post = post
        self._tls: io.ClientTlsContext | None = None
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._stopping: set[mqtt5.Client] = set()

    def _options(self, endpoint: Endpoint, client_id: str) -> mqtt5.ClientOptions:
        if self._tls is None:
            self._tls = self._plumbing.tls_context(self._settings.tls)
        connection = self._settings.connection
        socket_options = io.SocketOptions()
        socket_options.connect_timeout_ms = int(connection.connect_timeout_s * 1000)
        socket_options.keep_alive = True
        socket_options.keep_alive_timeout_secs = connection.tcp_keepalive_idle_s
        socket_options.keep_alive_interval_secs = connection.tcp_keepalive_interval_s
        socket_options.keep_alive_max_probes = connection.tcp_keepalive_probes
        return mqtt5.ClientOptions(
            host_name=endpoint.host,
            port=endpoint.port,
            bootstrap=self._plumbing.bootstrap,
            socket_options=socket_options,
            tls_ctx=self._tls,
            connect_options=mqtt5.ConnectPacket(
                client_id=client_id, keep_alive_interval_sec=connection.keepalive_s
            ),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            min_reconnect_delay_ms=_NEVER_MS,
            max_reconnect_delay_ms=_NEVER_MS,
            ping_timeout_ms=int(connection.ping_timeout_s * 1000),
            connack_timeout_ms=int(connection.connack_timeout_s * 1000),
            ack_timeout_sec=max(1, round(connection.ack_timeout_s)),
        )

    def connect(self, attempt: int, endpoint: Endpoint) -> None:
        self.close()
        session = _Session(attempt=attempt)
        options = self._options(endpoint, self._settings.client_id)
        options.on_lifecycle_event_connection_success_fn = lambda _d: self._succeeded(session)
        options.on_lifecycle_event_connection_failure_fn = lambda d: self._failed(
            session, d.exception
        )
        options.on_lifecycle_event_disconnection_fn = lambda d: self._lost(session, d.exception)
        options.on_lifecycle_event_stopped_fn = lambda _d: self._stopped(session)
        session.client = mqtt5.Client(options)
        with self._lock:
            self._session = session
        session.client.start()

    def disconnect(self, attempt: int) -> None:
        with self._lock:
            current = self._session
        if current is not None and current.attempt == attempt:
            self.close()

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            if session is None or session.finished:
                return
            session.finished = True
            session.connected = False
            client = session.client
        if client is not None:
            self._stop(client)

    def publish(self, attempt: int, topic: str, payload: bytes, qos: int) -> Future[Any] | None:
        """Publishes on connection `attempt`; None if that is not the live one."""
        with self._lock:
            session = self._session
        if session is None or session.attempt != attempt or not session.connected:
            return None
        client = session.client
        if client is None:
            return None
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS(qos))
        future: Future[Any] = client.publish(packet)
        return future

    # -- CRT threads ---------------------------------------------------

    def _succeeded(self, session: _Session) -> None:
        with self._lock:
            if session.finished:
                return
            session.connected = True
        self._post(ConnectSucceeded(now=time.monotonic(), attempt=session.attempt))

    def _failed(self, session: _Session, exc: BaseException | None) -> None:
        if not self._finish(session):
            return
        name = crt_error_name(exc)
        self._post(
            ConnectFailed(
                now=time.monotonic(),
                attempt=session.attempt,
                failure=classify_connect_error(name),
                detail=name,
            )
        )

    def _lost(self, session: _Session, exc: BaseException | None) -> None:
        if not session.connected or not self._finish(session):
            return
        name = crt_error_name(exc)
        self._post(
            ConnectionLost(
                now=time.monotonic(),
                attempt=session.attempt,
                failure=classify_loss(name),
                detail=name,
            )
        )

    def _finish(self, session: _Session) -> bool:
        with self._lock:
            if session.finished:
                return False
            session.finished = True
            session.connected = False
            if self._session is session:
                self._session = None
            client = session.client
        if client is not None:
            self._stop(client)
        return True

    def _stopped(self, session: _Session) -> None:
        with self._lock:
            if session.client is not None:
                self._stopping.discard(session.client)
            session.client = None

    def _stop(self, client: mqtt5.Client) -> None:
        with self._lock:
            self._stopping.add(client)  # alive until the CRT says it stopped
        with contextlib.suppress(AwsCrtError):  # already stopping
            client.stop()
