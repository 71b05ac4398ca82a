"""Cloud MQTT adapter: one AWS CRT MQTT5 client at a time (mutual TLS).

It carries out `Connect`/`Disconnect` and reports what happened as core
events; it decides nothing. The CRT's own reconnect loop is switched off in
effect (the first reconnect would come after an hour) and every client is
stopped on its first failure, because reconnection is the core's decision.
One event loop group, host resolver and bootstrap serve every client for
the life of the adapter, so reconnects do not leak threads or loops (the
reference device sample leaked an event loop per reconnect).

Blackhole detection: the CRT's default keep alive is 1200 s, which would
hide a dead path for 20 minutes. We use TCP keepalive (idle connections),
MQTT PINGREQ with a ping timeout, and PUBACK timeouts on QoS 1 publishes
(busy connections), all from settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from awscrt import http, io, mqtt5
from awscrt.exceptions import AwsCrtError
from awsiot import mqtt5_client_builder

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import ConnectFailed, ConnectionLost, ConnectSucceeded, Event
from iotdr.agent.core.failures import classify_connect_error, classify_loss
from iotdr.agent.core.settings import ConnectionSettings, HttpProxy, Settings, TlsSettings

log = logging.getLogger(__name__)

Post = Callable[[Event], None]
Clock = Callable[[], float]
MessageHandler = Callable[[str, bytes], None]

# Effectively "never": the core, not the CRT, decides when to reconnect.
_CRT_RECONNECT_DELAY_MS = 3_600_000
# AWS IoT on port 443 takes MQTT only with this ALPN protocol ("Protocols,
# port mappings, and authentication" in the AWS IoT developer guide).
AWS_IOT_MQTT_ALPN = "x-amzn-mqtt-ca"


def error_name(exc: BaseException | None) -> str:
    """The CRT's symbolic error name (e.g. AWS_IO_SOCKET_TIMEOUT)."""
    if isinstance(exc, AwsCrtError):
        return str(exc.name)
    return type(exc).__name__ if exc is not None else "UNKNOWN"


class Transport:
    """Shared CRT plumbing: one event loop group for every client."""

    def __init__(self, threads: int = 1) -> None:
        self.event_loop_group = io.EventLoopGroup(threads)
        self.resolver = io.DefaultHostResolver(self.event_loop_group)
        self.bootstrap = io.ClientBootstrap(self.event_loop_group, self.resolver)

    @staticmethod
    def tls_context(tls: TlsSettings) -> io.ClientTlsContext:
        """Loads the files as the CRT will; raises if it rejects them."""
        options = io.TlsContextOptions.create_client_with_mtls_from_path(
            tls.cert_file, tls.key_file
        )
        options.override_default_trust_store_from_path(None, tls.ca_file)
        return io.ClientTlsContext(options)

    @staticmethod
    def socket_options(connection: ConnectionSettings) -> io.SocketOptions:
        options = io.SocketOptions()
        options.connect_timeout_ms = int(connection.connect_timeout_s * 1000)
        options.keep_alive = True
        options.keep_alive_timeout_secs = connection.tcp_keepalive_idle_s
        options.keep_alive_interval_secs = connection.tcp_keepalive_interval_s
        options.keep_alive_max_probes = connection.tcp_keepalive_probes
        return options

    @staticmethod
    def proxy_options(proxy: HttpProxy | None) -> http.HttpProxyOptions | None:
        if proxy is None:
            return None
        return http.HttpProxyOptions(
            proxy.host, proxy.port, connection_type=http.HttpProxyConnectionType.Tunneling
        )

    def new_client(
        self,
        settings: Settings,
        endpoint: Endpoint,
        client_id: str,
        configure: Callable[[mqtt5.ClientOptions], None],
        *,
        persistent: bool = True,
    ) -> mqtt5.Client:
        """A stopped MQTT5 client for `endpoint`, made by awsiotsdk's builder,
        which sets what AWS IoT needs (ALPN on port 443, its flow control
        limits) and tunnels through `connection.http_proxy`. `configure`
        adds the callbacks. `persistent`: rejoin the region's session (the
        device's own connection); probes pass False and leave no session
        behind."""
        connection = settings.connection
        expiry = connection.session_expiry_s if persistent else 0
        options = mqtt5.ClientOptions(
            host_name=endpoint.host,
            port=endpoint.port,
            bootstrap=self.bootstrap,
            socket_options=self.socket_options(connection),
            connect_options=mqtt5.ConnectPacket(
                client_id=client_id,
                keep_alive_interval_sec=connection.keepalive_s,
                session_expiry_interval_sec=expiry,
            ),
            # A new client per attempt: REJOIN_ALWAYS asks every region for
            # the session it kept (the daemon subscribes again anyway, so a
            # region that kept none, or a failover, loses no subscription).
            session_behavior=(
                mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS
                if expiry
                else mqtt5.ClientSessionBehaviorType.CLEAN
            ),
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            min_reconnect_delay_ms=_CRT_RECONNECT_DELAY_MS,
            max_reconnect_delay_ms=_CRT_RECONNECT_DELAY_MS,
            ping_timeout_ms=int(connection.ping_timeout_s * 1000),
            connack_timeout_ms=int(connection.connack_timeout_s * 1000),
            # The CRT takes whole seconds here.
            ack_timeout_sec=max(1, round(connection.ack_timeout_s)),
        )
        configure(options)
        client: mqtt5.Client = mqtt5_client_builder.mtls_from_path(
            cert_filepath=settings.tls.cert_file,
            pri_key_filepath=settings.tls.key_file,
            ca_filepath=settings.tls.ca_file,
            endpoint=endpoint.host,
            client_options=options,
            http_proxy_options=self.proxy_options(connection.http_proxy),
            # The SDK would put its name and version in the CONNECT username.
            enable_metrics_collection=False,
            # The builder's default (AWS_IOT_CORE_DEFAULTS) paces publishes
            # to 100/s per connection on the client, AWS IoT's per-connection
            # limit; it cut the bridge to about 100 msg/s on the testbed. As
            # before the builder, pacing is left to the server.
            extended_validation_and_flow_control_options=(
                mqtt5.ExtendedValidationAndFlowControlOptions.NONE
            ),
        )
        return client


@dataclass(slots=True)
class _Session:
    attempt: int
    endpoint: Endpoint
    client: mqtt5.Client | None = None
    connected: bool = False
    finished: bool = False  # a result was posted or we disconnected on purpose


class CloudConnection:
    """Carries out Connect/Disconnect for the core; at most one session."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        *,
        post: Post,
        clock: Clock,
        on_message: MessageHandler | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._post = post
        self._clock = clock
        self._on_message = on_message
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._stopping: list[mqtt5.Client] = []

    def reconfigure(self, settings: Settings) -> None:
        """New settings apply from the next connection (the core reconnects
        when the identity changed)."""
        self._settings = settings

    # -- commands -------------------------------------------------------

    def connect(self, attempt: int, endpoint: Endpoint) -> None:
        self._close_current()
        session = _Session(attempt=attempt, endpoint=endpoint)

        def configure(options: mqtt5.ClientOptions) -> None:
            options.on_lifecycle_event_connection_success_fn = lambda _d: self._succeeded(session)
            options.on_lifecycle_event_connection_failure_fn = lambda data: self._failed(
                session, data.exception
            )
            options.on_lifecycle_event_disconnection_fn = lambda data: self._lost(
                session, data.exception
            )
            options.on_lifecycle_event_stopped_fn = lambda _data: self._stopped(session)
            options.on_publish_callback_fn = self._received

        try:
            session.client = self._transport.new_client(
                self._settings, endpoint, self._settings.client_id, configure
            )
        except AwsCrtError as exc:  # e.g. a key file replaced by a broken one since start
            self._failed(session, exc)
            return
        with self._lock:
            self._session = session
        log.debug("attempt %d: connecting to %s", attempt, endpoint)
        session.client.start()

    def disconnect(self, attempt: int) -> None:
        with self._lock:
            current = self._session
        if current is not None and current.attempt == attempt:
            self._close_current()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> Future[Any]:
        """Publish on the current connection; the future fails with the CRT
        error (e.g. AWS_ERROR_MQTT_TIMEOUT when no PUBACK came in time)."""
        with self._lock:
            session = self._session
        if session is None or session.client is None or not session.connected:
            failed: Future[Any] = Future()
            failed.set_exception(ConnectionError("not connected"))
            return failed
        packet = mqtt5.PublishPacket(
            topic=topic,
            payload=payload,
            qos=mqtt5.QoS(qos),
            user_properties=[mqtt5.UserProperty(name=n, value=v) for n, v in user_properties]
            or None,
        )
        future: Future[Any] = session.client.publish(packet)
        return future

    def subscribe(self, topic_filter: str, qos: int = 1) -> Future[Any] | None:
        with self._lock:
            session = self._session
        if session is None or session.client is None or not session.connected:
            return None
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic_filter, qos=mqtt5.QoS(qos))]
        )
        future: Future[Any] = session.client.subscribe(packet)
        return future

    def close(self) -> None:
        self._close_current()

    @property
    def connected_attempt(self) -> int | None:
        with self._lock:
            session = self._session
        return session.attempt if session is not None and session.connected else None

    # -- CRT callbacks (CRT threads) -------------------------------------

    def _succeeded(self, session: _Session) -> None:
        with self._lock:
            if session.finished:
                return
            session.connected = True
        self._post(ConnectSucceeded(now=self._clock(), attempt=session.attempt))

    def _failed(self, session: _Session, exc: BaseException | None) -> None:
        name = error_name(exc)
        if not self._finish(session):
            return
        kind = classify_connect_error(name)
        self._post(
            ConnectFailed(now=self._clock(), attempt=session.attempt, failure=kind, detail=name)
        )

    def _lost(self, session: _Session, exc: BaseException | None) -> None:
        name = error_name(exc)
        if not session.connected:
            return  # a failed attempt also reports a disconnection; _failed covers it
        if not self._finish(session):
            return
        kind = classify_loss(name)
        self._post(
            ConnectionLost(now=self._clock(), attempt=session.attempt, failure=kind, detail=name)
        )

    def _finish(self, session: _Session) -> bool:
        """Mark the session finished and stop its client; False if it was."""
        with self._lock:
            if session.finished:
                return False
            session.finished = True
            session.connected = False
            if self._session is session:
                self._session = None
            client = session.client
        if client is not None:
            self._stop_client(client)
        return True

    def _stopped(self, session: _Session) -> None:
        with self._lock:
            if session.client in self._stopping:
                self._stopping.remove(session.client)
            session.client = None

    def _received(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        if self._on_message is not None and packet is not None:
            payload = (
                packet.payload
                if isinstance(packet.payload, bytes)
                else bytes(packet.payload or b"")
            )
            self._on_message(packet.topic, payload)

    # -- helpers -----------------------------------------------------------

    def _close_current(self) -> None:
        with self._lock:
            session = self._session
            self._session = None
            if session is None or session.finished:
                return
            session.finished = True
            session.connected = False
            client = session.client
        if client is not None:
            self._stop_client(client)

    def _stop_client(self, client: mqtt5.Client) -> None:
        # Keep a reference until the CRT reports the client stopped.
        with self._lock:
            self._stopping.append(client)
        try:
            client.stop()
        except AwsCrtError as exc:  # already stopping
            log.debug("stop: %s", exc.name)
