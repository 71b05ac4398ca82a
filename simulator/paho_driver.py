"""Carries out one simulated device's commands with paho-mqtt, under gevent.

The Locust engine's counterpart of `driver.py`: the same `Device` (the
agent's decision core and the telemetry queue) with a different adapter.
Locust runs its workers under gevent, which patches sockets, `select`,
`ssl`, locks and sleeps so that blocking calls switch greenlets. paho-mqtt
is pure Python over those modules, so its blocking TCP connect and TLS
handshake are cooperative here (its `loop()` is not used, see `_io_round`).
(The AWS CRT runs
native event-loop threads that gevent cannot schedule or patch; its
callbacks would arrive on threads the gevent hub knows nothing about.)

Per device: one greenlet per connection (connect, CONNACK, then its I/O),
which alone reads, writes and closes that connection's socket; anything
else (a publish, a stop) queues its work and wakes it. Timers are hub timer
watchers, a QoS 1 publish is acknowledged by its
PUBACK or fails after `connection.ack_timeout_s` (`PublishFailed`), probes
are real connections. Every result goes through the worker's inbox, one
greenlet that feeds the cores in arrival order, so a core is never entered
twice at once. Failures are classified here (paho raises Python's socket,
ssl and MQTT errors, not the CRT's named errors) into the core's kinds,
with the same rule as the agent: a close before CONNACK is a JITR hang-up.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from iotdr.agent.core.commands import (
    ArmTimer,
    CancelTimer,
    Command,
    Connect,
    Disconnect,
    Probe,
    PublishHeartbeat,
    Report,
    Resolve,
)
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import (
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    Event,
    ProbeCompleted,
    PublishFailed,
    StopRequested,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.settings import ProbeDepth, Settings
from iotdr.simulator.device import Device
from iotdr.simulator.gevent_dns import GeventDns

log = logging.getLogger("iotdr.simulator")

# Connection-level outcomes, for whoever watches (Locust's live statistics).
# (region, seconds from the Connect, the failure's kind and detail or None)
ConnectWatcher = Callable[[str, float, tuple[FailureKind, str] | None], None]


class GeventInbox:
    """Results into the devices' cores, one at a time, in arrival order."""

    def __init__(self) -> None:
        self._items: gevent.queue.Queue[Callable[[], None]] = gevent.queue.Queue()
        self._greenlet = gevent.spawn(self._run)

    def post(self, item: Callable[[], None]) -> None:
        self._items.put_nowait(item)  # never blocks: safe from hub callbacks

    def _run(self) -> None:
        while True:
            item = self._items.get()
            try:
                item()
            except Exception:
                log.exception("device event failed")

    def close(self) -> None:
        self._greenlet.kill(block=False)


@dataclass(frozen=True, slots=True)
class Telemetry:
    topic: str  # with {client_id}
    qos: int
    payload_bytes: int
    interval_s: float


# TCP + TLS handshakes one worker runs at once. A handshake is CPU-bound
# here (paho's TLS in CPython, ~3.5 ms); with thousands started at once every
# one of them crawls (gevent shares the core between all) and most outlive
# the core's attempt timeout, which then starts the next one: the worker
# spends its core on handshakes that are abandoned. In turn, they finish at
# the rate the core gives, and one whose attempt was abandoned while it
# waited is never started. Enough to hide network latency: a handshake is
# ~3 round trips, at 50 ms each and ~150 handshakes/s per core ~25 in flight.
HANDSHAKES_IN_FLIGHT = 32


@dataclass(slots=True)
class GeventFleet:
    """What every device's driver on one worker shares."""

    inbox: GeventInbox
    dns: GeventDns
    telemetry: Telemetry
    on_connect: ConnectWatcher | None = None
    producing: bool = True
    handshakes: gevent.lock.BoundedSemaphore = field(
        default_factory=lambda: gevent.lock.BoundedSemaphore(HANDSHAKES_IN_FLIGHT)
    )


class _Client(mqtt.Client):
    """paho's client, connecting to an address from the worker's resolver.

    paho resolves the host itself on every connect; a fleet reconnecting at
    once would ask the network's resolver once per device. TLS still uses
    the host name (SNI and certificate check), as a real device does."""

    def __init__(self, dns: GeventDns, client_id: str) -> None:
        super().__init__(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
        )
        self._fleet_dns = dns

    def _create_socket_connection(self) -> socket.socket:
        address = self._fleet_dns.address(self._host)
        return socket.create_connection((address, self._port), timeout=self._connect_timeout)


class _ClosedBeforeConnackError(Exception):
    pass


class _ConnackRefusedError(Exception):
    pass


class _StoppedError(Exception):
    """The connection was ended on purpose before its CONNACK."""


def classify_paho(exc: BaseException) -> tuple[FailureKind, str]:
    """The core's kind of a failed connect, from what paho raised."""
    name = type(exc).__name__
    if isinstance(exc, _ClosedBeforeConnackError):
        return FailureKind.JITR_HANGUP, f"closed before CONNACK ({exc})"
    if isinstance(exc, _ConnackRefusedError):
        return FailureKind.AUTH, str(exc)
    if isinstance(exc, socket.gaierror):
        return FailureKind.RESOLVE, str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return FailureKind.REFUSED, name
    if isinstance(exc, (TimeoutError, gevent.Timeout)):
        return FailureKind.TIMEOUT, "timeout"
    if isinstance(exc, ssl.SSLError):
        return FailureKind.TLS, getattr(exc, "reason", None) or name
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return FailureKind.JITR_HANGUP, name
    if isinstance(exc, OSError) and exc.errno in (113, 101):  # EHOSTUNREACH, ENETUNREACH
        return FailureKind.TIMEOUT, name
    return FailureKind.OTHER, f"{name}: {exc}"[:200]


def classify_paho_loss(rc: MQTTErrorCode) -> FailureKind:
    if rc is MQTTErrorCode.MQTT_ERR_KEEPALIVE:
        return FailureKind.TIMEOUT
    return FailureKind.CLOSED


@dataclass(slots=True)
class _Session:
    attempt: int
    started: float
    client: _Client | None = None
    connected: bool = False
    finished: bool = False
    connack: int | None = None  # CONNACK return code, once it arrived
    # Set to wake the session's greenlet: a packet was queued, or it must end.
    wake: gevent.event.Event = field(default_factory=gevent.event.Event)
    # mid -> (message sequence or None for a heartbeat, its ack-timeout watcher)
    pending: dict[int, tuple[int | None, Any]] = field(default_factory=dict)


class PahoDriver:
    """One device: its core's commands carried out with paho under gevent."""

    def __init__(self, device: Device, fleet: GeventFleet) -> None:
        self.device = device
        self._fleet = fleet
        self._settings = device.machine.settings
        self._session: _Session | None = None
        self._timers: dict[TimerName, Any] = {}
        self._ticker: Any = None
        self._tls: ssl.SSLContext | None = None
        self._topic = fleet.telemetry.topic.format(client_id=device.client_id)
        self._prefix = device.client_id.encode()

    # -- feeding the core (only from the inbox greenlet) ------------------

    def post(self, event: Event) -> None:
        self._fleet.inbox.post(lambda: self.feed(event))

    def feed(self, event: Event) -> None:
        for command in self.device.handle(event):
            self._execute(command)
        self._pump()

    def start_producing(self, phase_s: float) -> None:
        interval = self._fleet.telemetry.interval_s
        self._ticker = _later(phase_s % interval, lambda: self._fleet.inbox.post(self._produce))

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self.feed(StopRequested(now=time.monotonic()))
        for watcher in self._timers.values():
            watcher.stop()
        self._timers.clear()
        self._close()

    # -- commands --------------------------------------------------------

    def _execute(self, command: Command) -> None:
        if isinstance(command, Connect):
            self._connect(command.attempt, command.endpoint)
        elif isinstance(command, Disconnect):
            if self._session is not None and self._session.attempt == command.attempt:
                self._close()
        elif isinstance(command, ArmTimer):
            self._cancel(command.timer)
            timer = command.timer
            self._timers[timer] = _later(
                command.at - time.monotonic(),
                lambda: self._fleet.inbox.post(lambda: self._fire(timer)),
            )
        elif isinstance(command, CancelTimer):
            self._cancel(command.timer)
        elif isinstance(command, Resolve):
            gevent.spawn(self._resolve, command)
        elif isinstance(command, Probe):
            gevent.spawn(self._probe, command)
        elif isinstance(command, PublishHeartbeat):
            self._heartbeat(command)
        elif isinstance(command, Report):
            log.debug("%s: %s", self.device.client_id, command.message)

    def _cancel(self, timer: TimerName) -> None:
        watcher = self._timers.pop(timer, None)
        if watcher is not None:
            watcher.stop()

    def _fire(self, timer: TimerName) -> None:
        if self._timers.pop(timer, None) is not None:
            self.feed(TimerFired(now=time.monotonic(), timer=timer))

    def _resolve(self, command: Resolve) -> None:
        event = self._fleet.dns.resolve(command.name, command.txt_name)
        self._fleet.inbox.post(lambda: self.feed(event))

    # -- the connection --------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            tls = self._settings.tls
            self._tls = ssl.create_default_context(cafile=tls.ca_file)
            self._tls.load_cert_chain(tls.cert_file, tls.key_file)
        return self._tls

    def _connect(self, attempt: int, endpoint: Endpoint) -> None:
        self._close()
        session = _Session(attempt=attempt, started=time.monotonic())
        self._session = session
        gevent.spawn(self._run_session, session, endpoint)

    def _close(self) -> None:
        """Ends the current connection: a message to its greenlet, which
        hangs up and closes the socket itself (never closed from here)."""
        session, self._session = self._session, None
        if session is None or session.finished:
            return
        _finish(session)
        session.wake.set()

    def _run_session(self, session: _Session, endpoint: Endpoint) -> None:
        """One connection from TCP connect to its end (its own greenlet).

        Only this greenlet touches the connection's socket, and it closes
        it on every way out."""
        try:
            self._session_body(session, endpoint)
        finally:
            if session.client is not None:
                _drop(session.client)

    def _session_body(self, session: _Session, endpoint: Endpoint) -> None:
        try:
            client = self._open(session, endpoint)
        except Exception as exc:  # everything paho and the socket layer raise
            kind, detail = classify_paho(exc)
            if session.client is not None:
                _drop(session.client)
            if not session.finished:
                _finish(session)
                self._connect_result(endpoint, session, (kind, detail))
                event = ConnectFailed(
                    now=time.monotonic(), attempt=session.attempt, failure=kind, detail=detail
                )
                self.post(event)
            return
        if session.finished:  # stopped while the CONNACK arrived
            _hang_up(client)
            return
        session.connected = True
        self._connect_result(endpoint, session, None)
        self.post(ConnectSucceeded(now=time.monotonic(), attempt=session.attempt))
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        # An idle device wakes only for its keepalive, its socket, or its
        # wake event (a queued packet, or the end).
        idle_s = max(1.0, self._settings.connection.keepalive_s / 4)
        while not session.finished and rc is MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = _io_round(client, session.wake, idle_s)
        if _ended(session):  # closed on purpose
            _hang_up(client)
            return
        _drop(client)
        _finish(session)
        self.post(
            ConnectionLost(
                now=time.monotonic(),
                attempt=session.attempt,
                failure=classify_paho_loss(rc),
                detail=rc.name,
            )
        )

    def _open(self, session: _Session, endpoint: Endpoint) -> _Client:
        """TCP, TLS and CONNACK within the agent's timeouts; raises on failure."""
        return open_client(
            self._settings,
            client_id=self._settings.client_id,
            endpoint=endpoint,
            context=self._tls_context(),
            dns=self._fleet.dns,
            session=session,
            on_publish=lambda mid: self._fleet.inbox.post(lambda: self._acked(session, mid)),
            handshakes=self._fleet.handshakes,
        )

    def _connect_result(
        self, endpoint: Endpoint, session: _Session, failure: tuple[FailureKind, str] | None
    ) -> None:
        watcher = self._fleet.on_connect
        if watcher is not None:
            watcher(endpoint.region or endpoint.host, time.monotonic() - session.started, failure)

    # -- telemetry -------------------------------------------------------

    def _produce(self) -> None:
        fleet = self._fleet
        if not fleet.producing:
            return
        self.device.produce(time.monotonic())
        self._pump()
        self._ticker = _later(
            fleet.telemetry.interval_s, lambda: self._fleet.inbox.post(self._produce)
        )

    def _live(self, attempt: int) -> _Session | None:
        session = self._session
        if session is None or session.attempt != attempt or not session.connected:
            return None
        if session.finished or session.client is None:
            return None
        return session

    def _pump(self) -> None:
        attempt = self.device.connected_attempt
        if attempt is None:
            return
        telemetry = self._fleet.telemetry
        for message in self.device.take_sendable():
            payload = b"%s %d %.3f " % (self._prefix, message.sequence, time.time())
            payload = payload.ljust(telemetry.payload_bytes, b".")
            if not self._publish(attempt, self._topic, payload, telemetry.qos, message.sequence):
                self.device.not_acknowledged(message.sequence)

    def _publish(
        self, attempt: int, topic: str, payload: bytes, qos: int, sequence: int | None
    ) -> bool:
        session = self._live(attempt)
        if session is None or session.client is None:
            return False
        info = session.client.publish(topic, payload, qos)
        session.wake.set()  # its greenlet writes it
        if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        if qos == 0:
            if sequence is not None:
                self.device.acknowledged(sequence, attempt, time.monotonic())
            return True
        mid = info.mid
        timeout = _later(
            self._settings.connection.ack_timeout_s,
            lambda: self._fleet.inbox.post(lambda: self._ack_timed_out(session, mid)),
        )
        session.pending[mid] = (sequence, timeout)
        return True

    def _acked(self, session: _Session, mid: int) -> None:
        entry = session.pending.pop(mid, None)
        if entry is None:
            return
        sequence, timeout = entry
        timeout.stop()
        if sequence is not None:
            self.device.acknowledged(sequence, session.attempt, time.monotonic())
            self._pump()

    def _ack_timed_out(self, session: _Session, mid: int) -> None:
        """No PUBACK within ack_timeout_s: the core hears PublishFailed."""
        entry = session.pending.pop(mid, None)
        if entry is None:
            return
        sequence, _ = entry
        if sequence is not None:
            self.device.not_acknowledged(sequence)
        self.feed(
            PublishFailed(
                now=time.monotonic(),
                attempt=session.attempt,
                failure=FailureKind.TIMEOUT,
                detail="no PUBACK",
            )
        )

    def _heartbeat(self, command: PublishHeartbeat) -> None:
        topic = self._settings.heartbeat.topic
        if topic:
            self._publish(command.attempt, topic, b"%d" % command.sequence, 1, None)

    # -- failback probes -------------------------------------------------

    def _probe(self, command: Probe) -> None:
        failback = self._settings.failback
        failure: FailureKind | None = None
        detail = ""
        session: _Session | None = None
        try:
            # TimeoutError, not gevent.Timeout (a BaseException that would
            # kill this greenlet and leave the core waiting for its result).
            with gevent.Timeout(failback.probe_timeout_s, TimeoutError):
                if command.depth is ProbeDepth.MQTT:
                    probe = replace(self._settings, client_id=f"{self._settings.client_id}-probe")
                    session = _Session(attempt=command.probe_id, started=time.monotonic())
                    client = open_client(
                        probe,
                        client_id=probe.client_id,
                        endpoint=command.endpoint,
                        context=self._tls_context(),
                        dns=self._fleet.dns,
                        session=session,
                        on_publish=None,
                        handshakes=self._fleet.handshakes,
                    )
                    _hang_up(client)
                else:
                    self._socket_probe(command)
        except Exception as exc:  # every way a probe fails is a result
            failure, detail = classify_paho(exc)
            if session is not None and session.client is not None:
                _drop(session.client)
        event = ProbeCompleted(
            now=time.monotonic(),
            probe_id=command.probe_id,
            endpoint=command.endpoint,
            healthy=failure is None,
            failure=failure,
            detail=detail,
        )
        self._fleet.inbox.post(lambda: self.feed(event))

    def _socket_probe(self, command: Probe) -> None:
        endpoint = command.endpoint
        address = self._fleet.dns.address(endpoint.host)
        sock = socket.create_connection((address, endpoint.port))
        try:
            if command.depth is ProbeDepth.TLS:
                sock = self._tls_context().wrap_socket(sock, server_hostname=endpoint.host)
        finally:
            sock.close()


def open_client(
    settings: Settings,
    *,
    client_id: str,
    endpoint: Endpoint,
    context: ssl.SSLContext,
    dns: GeventDns,
    session: _Session,
    on_publish: Callable[[int], None] | None,
    handshakes: gevent.lock.BoundedSemaphore,
) -> _Client:
    """A paho client connected (CONNACK accepted) to `endpoint`; raises otherwise.

    The TCP connect and TLS handshake wait for a turn in `handshakes`."""
    connection = settings.connection
    client = _Client(dns, client_id)
    session.client = client
    client.tls_set_context(context)
    # Every read and write of the TLS socket happens in the session's
    # greenlet (see _io_round): with this hook set, a packet queued from
    # another greenlet (a publish) does not make paho write it there and
    # then; the hook wakes the session instead.
    client.on_socket_register_write = lambda _c, _u, _s: session.wake.set()
    client.connect_timeout = connection.connect_timeout_s
    client.max_inflight_messages_set(0)  # the device keeps AWS IoT's 100 itself

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        session.connack = int(reason.value)

    client.on_connect = on_connect
    if on_publish is not None:
        client.on_publish = lambda _c, _u, mid, _r, _p: on_publish(mid)
    with handshakes:
        if session.finished:  # abandoned while it waited for its turn
            raise _StoppedError("stopped before connecting")
        timeout_s = connection.connect_timeout_s + connection.connack_timeout_s
        with gevent.Timeout(timeout_s, TimeoutError):
            client.connect(endpoint.host, endpoint.port, keepalive=connection.keepalive_s)
    deadline = time.monotonic() + connection.connack_timeout_s
    while session.connack is None:
        if session.finished:
            raise _StoppedError("stopped before CONNACK")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no CONNACK")
        rc = _io_round(client, session.wake, min(left, 1.0))
        if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _ClosedBeforeConnackError(rc.name)
    if session.connack != 0:
        raise _ConnackRefusedError(f"CONNACK refused ({session.connack})")
    return client


def _io_round(client: _Client, wake: gevent.event.Event, timeout: float) -> MQTTErrorCode:
    """One round of paho's loop, driven through its external-loop calls.

    Waits until the socket is readable (or writable, with packets queued),
    `wake` is set, or `timeout`; then reads, writes and keeps alive. Not
    paho's `loop()`: that calls `select()`, which under gevent first polls
    with the real select(2), and that refuses any file descriptor at or
    above FD_SETSIZE (1024) with ValueError, which `loop()` reports as
    MQTT_ERR_CONN_LOST. A worker holds more than 1,024 sockets from a few
    hundred devices on; the wait here is a libev watcher, with no such
    limit (and without paho's socket pair: one descriptor per connection)."""
    sock = client.socket()
    if sock is None:
        return MQTTErrorCode.MQTT_ERR_NO_CONN
    pending = getattr(sock, "pending", None)
    buffered = pending() if pending is not None else 0  # TLS bytes already read
    if not buffered and not wake.is_set():
        loop: Any = gevent.get_hub().loop
        watcher = loop.io(sock.fileno(), _READ | (_WRITE if client.want_write() else 0))
        watcher.start(wake.set)
        try:
            wake.wait(timeout)
        finally:
            watcher.stop()
            watcher.close()
    wake.clear()
    rc = client.loop_read()
    if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
        return rc
    if client.want_write():
        rc = client.loop_write()
        if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            return rc
    return client.loop_misc()


_READ, _WRITE = 1, 2  # libev's EV_READ, EV_WRITE


def _ended(session: _Session) -> bool:
    return session.finished


def _finish(session: _Session) -> None:
    session.finished = True
    session.connected = False
    for _, timeout in session.pending.values():
        timeout.stop()


def _hang_up(client: _Client) -> None:
    """DISCONNECT (given 0.1 s to go out), then close; by the socket's owner."""
    with contextlib.suppress(Exception):  # the connection may be gone already
        client.disconnect()
        wake = gevent.event.Event()
        deadline = time.monotonic() + 0.1
        while client.socket() is not None and client.want_write():
            left = deadline - time.monotonic()
            if left <= 0 or _io_round(client, wake, left) is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
    _drop(client)


def _drop(client: _Client) -> None:
    """Closes the client's socket (and paho's wake-up socket pair) now.

    A failed attempt must not leave its connection open: the region would
    keep it, and the device's next CONNECT would find its own client id
    already connected (the broker closes the old one, AWS IoT too)."""
    with contextlib.suppress(OSError):
        client._reset_sockets()  # paho's own teardown (also run by its __del__)


def _later(delay_s: float, callback: Callable[[], None]) -> Any:
    """A hub timer: `callback` runs in the hub, so it must only post."""
    watcher = gevent.get_hub().loop.timer(max(0.0, delay_s))
    watcher.start(callback)
    return watcher
