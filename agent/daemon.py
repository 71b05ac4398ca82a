"""The agent daemon: wires the decision core to its adapters.

One linear startup and shutdown path (`Daemon.run`): start the adapters,
install signal handlers, feed `Started`, notify READY, wait for SIGTERM,
notify STOPPING, tear down in reverse order. SIGHUP reloads all-or-nothing:
the whole new configuration is read and validated first; if anything is
wrong the error is logged with "configuration NOT changed" and the agent
keeps running on the old one.

Every decision is the core's; this module only carries out commands and
turns what happens into events stamped with the loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotdr.agent import probes
from iotdr.agent.cloud_mqtt import CloudConnection, Transport, error_name
from iotdr.agent.config_files import LoadedConfig, load_for
from iotdr.agent.control import ControlServer
from iotdr.agent.core.commands import (
    ArmTimer,
    CancelTimer,
    Command,
    Connect,
    Disconnect,
    Level,
    Probe,
    PublishHeartbeat,
    Report,
    Resolve,
)
from iotdr.agent.core.events import (
    ConfigChanged,
    Event,
    ProbeCompleted,
    PublishFailed,
    Started,
    StopRequested,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import classify_loss
from iotdr.agent.core.machine import History, Machine, Snapshot, State
from iotdr.agent.dns_lookup import lookup, make_resolver
from iotdr.agent.environment import check_environment
from iotdr.agent.file_modes import check_tls_files
from iotdr.agent.history import HistoryWriter, load_history
from iotdr.agent.notify import Watchdog, notify, reloading, watchdog_interval
from iotdr.agent.status import status_document

if TYPE_CHECKING:
    from iotdr.agent.bridge import Bridge
    from iotdr.agent.metrics_server import MetricsServer

log = logging.getLogger("iotdr.agent")

MessageListener = Callable[[str, bytes], None]

_LEVELS = {
    Level.DEBUG: logging.DEBUG,
    Level.INFO: logging.INFO,
    Level.WARNING: logging.WARNING,
    Level.ERROR: logging.ERROR,
}


class EndpointFilter(logging.Filter):
    """Stamps every log record with the current region and endpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.region = "-"
        self.endpoint = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.region = self.region
        record.endpoint = self.endpoint
        return True


class Daemon:
    def __init__(
        self, loaded: LoadedConfig, config: Path | None, root: Path, endpoint_filter: EndpointFilter
    ) -> None:
        self._loaded = loaded
        self._config = config
        self._root = root
        self._filter = endpoint_filter
        self._settings = loaded.settings
        self._history = HistoryWriter(self._settings.state_dir)
        self._machine = Machine(
            self._settings, random.Random(), history=load_history(self._settings.state_dir)
        )
        self._timers: dict[TimerName, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._listeners: list[tuple[str, MessageListener]] = []
        self._topic_matches: Callable[[str, str], bool] = lambda _filter, _topic: False
        self._started_epoch = time.time()
        self._watchdog: Watchdog | None = None
        # Set while the core handles an event: left set only if an exception
        # escaped the core, which then is broken and the watchdog stops.
        self._in_core = False
        self._reloading = False
        self._reload_wanted = False

    # ------------------------------------------------------------- run

    async def run(self) -> int:
        """The service: start, serve until SIGTERM/SIGINT, stop."""
        await self.start()
        loop = self._loop
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        notify("READY=1", f"STATUS={self._state_line()}", f"MAINPID={os.getpid()}")
        self._serve_watchdog()
        await self._stop.wait()
        log.info("stopping")
        notify("STOPPING=1")
        if self._watchdog is not None:
            self._watchdog.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await self.stop()
        return 0

    async def start(self, *, embedded: bool = False) -> None:
        """Start the adapters and the core. `embedded`: a program that is the
        device hosts the agent; it publishes through the spool directly, so
        the spool runs even without a local broker bridge."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        settings = self._settings
        check_tls_files(settings, ", ".join(str(f) for f in self._loaded.files))
        check_environment(self._loaded, python_ssl=False)

        transport = Transport()
        self._transport = transport
        transport.tls_context(settings.tls)  # the CRT takes the files, or we stop here
        self._bridge: Bridge | None = None
        if settings.bridge.enabled or embedded:
            # Imported here: paho-mqtt and SQLite cost a device without a
            # bridge about 1 MiB of RSS it has no use for.
            from iotdr.agent.bridge import Bridge  # noqa: PLC0415

            self._bridge = Bridge(
                settings.bridge,
                settings.client_id,
                Path(settings.state_dir),
                publish=self._bridge_publish,
                trouble=self._publish_failed,
            )
        self._cloud = CloudConnection(
            settings,
            transport,
            post=self._post_threadsafe,
            clock=time.monotonic,
            on_message=self._cloud_message,
        )
        if self._bridge is not None:
            self._bridge.start(connect_local=settings.bridge.enabled)
        self._resolver = make_resolver(settings.dns)
        self._ssl = probes.tls_context(settings)
        self._control = ControlServer(settings.control_socket, self.status)
        await self._control.start()
        self._metrics_server = await self._serve_metrics()
        log.info(
            "iotdr-agent starting (pid %d, client id %s, config %s)",
            os.getpid(),
            settings.client_id,
            ", ".join(str(f) for f in self._loaded.files),
        )
        self._dispatch(Started(now=loop.time()))

    async def stop(self) -> None:
        """Tear down in the reverse order of start."""
        self._dispatch(StopRequested(now=self._loop.time()))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bridge is not None:
            self._bridge.stop()
        self._cloud.close()
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        await self._control.stop()
        log.info("stopped")

    async def _serve_metrics(self) -> MetricsServer | None:
        """The optional metrics port. A port that cannot be bound (in use,
        an address not on this machine) is logged; the agent runs on."""
        listen = self._settings.metrics.listen
        if listen is None:
            return None
        # Imported here: off by default, so most agents never load it.
        from iotdr.agent.metrics_server import MetricsServer  # noqa: PLC0415

        server = MetricsServer(listen.host, listen.port, self.status)
        try:
            await server.start()
        except OSError as exc:
            log.error("metrics.listen %s: cannot serve: %s; no metrics port", listen, exc.strerror)
            return None
        log.info("serving metrics on http://%s/metrics", listen)
        return server

    # ----------------------------------------------------- embedding

    def add_cloud_listener(self, topic_filter: str, listener: MessageListener) -> None:
        """Subscribe in every region the agent lands in; `listener(topic,
        payload)` runs on a CRT thread."""
        from paho.mqtt.client import topic_matches_sub  # noqa: PLC0415 (as the bridge)

        self._topic_matches = topic_matches_sub
        self._listeners.append((topic_filter, listener))

    def submit(self, topic: str, payload: bytes) -> Future[None]:
        """Hand a message to the spool; the future completes once it is
        durably stored (it waits while the spool is full)."""
        if self._bridge is None:
            raise RuntimeError("the spool runs only with the bridge or when embedded")
        return self._bridge.submit(topic, payload)

    def _cloud_message(self, topic: str, payload: bytes) -> None:
        if self._bridge is not None:
            self._bridge.on_cloud_message(topic, payload)
        for topic_filter, listener in self._listeners:
            if self._topic_matches(topic_filter, topic):
                listener(topic, payload)

    def request_stop(self) -> None:
        self._stop.set()

    # ----------------------------------------------------- event plumbing

    def _post_threadsafe(self, event: Event) -> None:
        """Adapters call this from their own threads."""
        self._loop.call_soon_threadsafe(self._dispatch, event)

    def _dispatch(self, event: Event) -> None:
        self._in_core = True
        before = self._machine.snapshot()
        for command in self._machine.handle(event):
            self._execute(command)
        after = self._machine.snapshot()
        self._in_core = False
        if (before.state, before.endpoint) != (after.state, after.endpoint):
            self._on_state_change(after)
        if (before.failovers, before.failbacks) != (after.failovers, after.failbacks):
            self._history.save(
                History(
                    failovers=after.failovers,
                    failbacks=after.failbacks,
                    last_failover_s=after.last_failover_s,
                )
            )

    def _on_state_change(self, snapshot: Snapshot) -> None:
        endpoint = snapshot.endpoint
        self._filter.endpoint = str(endpoint) if endpoint else "-"
        self._filter.region = (endpoint.region or "-") if endpoint else "-"
        notify(f"STATUS={self._state_line()}")
        if self._bridge is None:
            return
        attempt = self._cloud.connected_attempt if snapshot.connected else None
        if attempt is None:
            self._bridge.on_disconnected()
            return
        # Commands and shadows: subscribe in every region we land in.
        filters = [m.filter for m in self._settings.bridge.from_cloud]
        for topic_filter in [*filters, *(f for f, _ in self._listeners)]:
            self._cloud.subscribe(topic_filter)
        self._bridge.on_connected(attempt)

    def _bridge_publish(
        self, topic: str, payload: bytes, qos: int, properties: Sequence[tuple[str, str]]
    ) -> Future[Any]:
        return self._cloud.publish(topic, payload, qos, properties)

    def _publish_failed(self, attempt: int, exc: BaseException) -> None:
        """A QoS 1 publish (heartbeat or forwarded message) got no PUBACK;
        called from CRT or spool threads. The core decides what it means."""
        if isinstance(exc, ConnectionError):
            return  # not connected any more: the loss itself is reported
        name = error_name(exc)
        self._post_threadsafe(
            PublishFailed(
                now=time.monotonic(), attempt=attempt, failure=classify_loss(name), detail=name
            )
        )

    # ----------------------------------------------------- watchdog

    def _serve_watchdog(self) -> None:
        """Pings for systemd's `WatchdogSec=` while the core is alive."""
        interval = watchdog_interval()
        if interval is not None:
            self._watchdog = Watchdog(self._loop, interval, self.core_alive)
            self._watchdog.start()

    def core_alive(self) -> bool:
        """No event escaped the core half handled, and it has not stopped."""
        return not self._in_core and self._machine.snapshot().state is not State.STOPPED

    def _state_line(self) -> str:
        snapshot = self._machine.snapshot()
        where = f" to {snapshot.endpoint} ({snapshot.role.value})" if snapshot.endpoint else ""
        return f"{snapshot.state.value}{where}"

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------ commands

    def _execute(self, command: Command) -> None:
        if isinstance(command, Connect):
            log.debug(
                "connect attempt %d to %s (%s)",
                command.attempt,
                command.endpoint,
                command.why.value,
            )
            self._cloud.connect(command.attempt, command.endpoint)
        elif isinstance(command, Disconnect):
            self._cloud.disconnect(command.attempt)
        elif isinstance(command, ArmTimer):
            self._cancel_timer(command.timer)
            self._timers[command.timer] = self._loop.call_at(command.at, self._fire, command.timer)
        elif isinstance(command, CancelTimer):
            self._cancel_timer(command.timer)
        elif isinstance(command, Resolve):
            self._spawn(self._resolve(command))
        elif isinstance(command, Probe):
            self._spawn(self._probe(command))
        elif isinstance(command, PublishHeartbeat):
            self._heartbeat(command)
        elif isinstance(command, Report):
            log.log(_LEVELS[command.level], "%s", command.message)

    def _cancel_timer(self, timer: TimerName) -> None:
        handle = self._timers.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, timer: TimerName) -> None:
        self._timers.pop(timer, None)
        self._dispatch(TimerFired(now=self._loop.time(), timer=timer))

    async def _resolve(self, command: Resolve) -> None:
        event = await lookup(self._resolver, command.name, command.txt_name, self._loop.time)
        self._dispatch(event)

    async def _probe(self, command: Probe) -> None:
        try:
            await probes.probe(
                command.endpoint,
                command.depth,
                settings=self._settings,
                transport=self._transport,
                context=self._ssl,
            )
        except probes.ProbeFailedError as exc:
            log.debug("probe %s: %s %s", command.endpoint, exc.kind.value, exc.detail)
            event = ProbeCompleted(
                now=self._loop.time(),
                probe_id=command.probe_id,
                endpoint=command.endpoint,
                healthy=False,
                failure=exc.kind,
                detail=exc.detail,
            )
        else:
            event = ProbeCompleted(
                now=self._loop.time(),
                probe_id=command.probe_id,
                endpoint=command.endpoint,
                healthy=True,
            )
        self._dispatch(event)

    def _heartbeat(self, command: PublishHeartbeat) -> None:
        topic = self._settings.heartbeat.topic
        if not topic:
            return
        payload = json.dumps(
            {
                "client_id": self._settings.client_id,
                "seq": command.sequence,
                "ts": time.time(),
            }
        ).encode()
        future = self._cloud.publish(topic, payload, qos=1)

        def done(fut: Any) -> None:
            exc = None if fut.cancelled() else fut.exception()
            if exc is not None:
                self._publish_failed(command.attempt, exc)

        future.add_done_callback(done)

    # -------------------------------------------------------- reload

    def _reload(self) -> None:
        """SIGHUP. Files are read and checked on a worker thread, so a slow
        or hostile file never stalls the loop; a storm of signals runs one
        reload at a time and ends with the files as they are last."""
        log.info("SIGHUP: reloading configuration")
        reloading()
        self._reload_wanted = True
        if not self._reloading:
            self._reloading = True
            self._spawn(self._reload_until_current())

    async def _reload_until_current(self) -> None:
        try:
            while self._reload_wanted:
                self._reload_wanted = False
                try:
                    loaded, ssl_context = await asyncio.to_thread(self._read_config)
                except Exception as exc:  # config errors, unreadable files, certs the CRT rejects
                    log.error("configuration NOT changed: %s", exc)
                    continue
                self._apply(loaded, ssl_context)
        finally:
            self._reloading = False
            notify("READY=1", f"STATUS={self._state_line()}")

    def _read_config(self) -> tuple[LoadedConfig, probes.TlsContexts]:
        loaded = load_for(self._config, self._root)
        check_tls_files(loaded.settings, ", ".join(str(f) for f in loaded.files))
        check_environment(loaded, python_ssl=False)
        ssl_context = probes.tls_context(loaded.settings)
        self._transport.tls_context(loaded.settings.tls)
        return loaded, ssl_context

    def _apply(self, loaded: LoadedConfig, ssl_context: probes.TlsContexts) -> None:
        for key in ("control_socket", "bridge", "metrics"):
            if getattr(loaded.settings, key) != getattr(self._settings, key):
                log.warning("%s changes take effect after a restart", key)
        self._cloud.reconfigure(loaded.settings)
        self._loaded, self._settings, self._ssl = loaded, loaded.settings, ssl_context
        self._resolver = make_resolver(loaded.settings.dns)
        self._dispatch(ConfigChanged(now=self._loop.time(), settings=loaded.settings))

    # -------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        return status_document(
            self._machine.snapshot(),
            mono_now=self._loop.time(),
            epoch_now=time.time(),
            extra={
                "pid": os.getpid(),
                "client_id": self._settings.client_id,
                "config_files": [str(f) for f in self._loaded.files],
                "started": self._started_epoch,
                **({"bridge": self._bridge.status()} if self._bridge else {}),
            },
        )
