"""Carries out one simulated device's commands on real brokers (asyncio).

The driver is the device's adapter layer, as the daemon is the agent's:
timers on the event loop, connections on the shared CRT plumbing, DNS
through the fleet's caching resolver, probes as real connections, and the
telemetry pump (QoS 1 publishes, PUBACKs, failures back into the queue).
It decides nothing; the device's core does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

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
from iotdr.agent.core.events import (
    ConnectFailed,
    Event,
    ProbeCompleted,
    PublishFailed,
    StopRequested,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind, classify_loss
from iotdr.agent.core.settings import ProbeDepth
from iotdr.simulator.crt_sessions import CrtConnection, CrtPlumbing, crt_error_name
from iotdr.simulator.device import Device
from iotdr.simulator.inbox import Inbox
from iotdr.simulator.probes import ProbeError, Prober, tls_probe_context
from iotdr.simulator.shared_dns import SharedDns

log = logging.getLogger("iotdr.simulator")


@dataclass(frozen=True, slots=True)
class Telemetry:
    topic: str  # with {client_id}
    qos: int
    payload_bytes: int
    interval_s: float


@dataclass(slots=True)
class FleetContext:
    """What every device's driver shares."""

    loop: asyncio.AbstractEventLoop
    inbox: Inbox
    plumbing: CrtPlumbing
    dns: SharedDns
    prober: Prober
    telemetry: Telemetry
    producing: bool = True


class DeviceDriver:
    def __init__(self, device: Device, fleet: FleetContext) -> None:
        self.device = device
        self._fleet = fleet
        settings = device.machine.settings
        self._connection = CrtConnection(settings, fleet.plumbing, self._post)
        self._probe_connection: CrtConnection | None = None
        self._timers: dict[TimerName, asyncio.TimerHandle] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self._probe_context: ssl.SSLContext | None = None
        self._closing = False
        self._topic = fleet.telemetry.topic.format(client_id=device.client_id)
        self._prefix = device.client_id.encode()

    # -- feeding the core ------------------------------------------------

    def _post(self, event: Event) -> None:
        """From CRT threads: hand the event to the loop."""
        self._fleet.inbox.post(lambda: self.feed(event))

    def feed(self, event: Event) -> None:
        for command in self.device.handle(event):
            self._execute(command)
        self._pump()

    def start_producing(self, phase_s: float) -> None:
        interval = self._fleet.telemetry.interval_s
        self._ticker = self._fleet.loop.call_later(phase_s % interval, self._produce)

    def stop(self) -> None:
        """On the loop: the core stops and nothing more is scheduled."""
        if self._ticker is not None:
            self._ticker.cancel()
        self._closing = True
        self.feed(StopRequested(now=time.monotonic()))
        for handle in self._timers.values():
            handle.cancel()

    def close(self) -> None:
        """From any thread: close the connection. A CRT client's stop() can
        take milliseconds while the event loop group is busy, so a fleet
        closes its connections off the event loop."""
        self._connection.close()

    # -- commands --------------------------------------------------------

    def _execute(self, command: Command) -> None:
        if isinstance(command, Connect):
            try:
                self._connection.connect(command.attempt, command.endpoint)
            except Exception as exc:  # a client the CRT would not create
                self._post(
                    ConnectFailed(
                        now=time.monotonic(),
                        attempt=command.attempt,
                        failure=FailureKind.OTHER,
                        detail=crt_error_name(exc),
                    )
                )
        elif isinstance(command, Disconnect):
            if not self._closing:  # when stopping, close() does it off the loop
                self._connection.disconnect(command.attempt)
        elif isinstance(command, ArmTimer):
            self._cancel(command.timer)
            self._timers[command.timer] = self._fleet.loop.call_at(
                command.at, self._fire, command.timer
            )
        elif isinstance(command, CancelTimer):
            self._cancel(command.timer)
        elif isinstance(command, Resolve):
            self._spawn(self._resolve(command))
        elif isinstance(command, Probe):
            self._spawn(self._probe(command))
        elif isinstance(command, PublishHeartbeat):
            self._heartbeat(command)
        elif isinstance(command, Report):
            log.debug("%s: %s", self.device.client_id, command.message)

    def _cancel(self, timer: TimerName) -> None:
        handle = self._timers.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, timer: TimerName) -> None:
        self._timers.pop(timer, None)
        self.feed(TimerFired(now=time.monotonic(), timer=timer))

    def _spawn(self, work: Any) -> None:
        task = self._fleet.loop.create_task(work)
        task.add_done_callback(_report_crash)

    async def _resolve(self, command: Resolve) -> None:
        self.feed(await self._fleet.dns.resolve(command.name, command.txt_name))

    async def _probe(self, command: Probe) -> None:
        failback = self.device.machine.settings.failback
        failure: FailureKind | None = None
        detail = ""
        try:
            if command.depth is ProbeDepth.MQTT:
                await self._mqtt_probe(command, failback.probe_timeout_s)
            else:
                context = None
                if command.depth is ProbeDepth.TLS:
                    if self._probe_context is None:
                        self._probe_context = tls_probe_context(self.device.machine.settings.tls)
                    context = self._probe_context
                await self._fleet.prober.probe(command.endpoint, context, failback.probe_timeout_s)
        except ProbeError as exc:
            failure, detail = exc.kind, str(exc)
        self.feed(
            ProbeCompleted(
                now=time.monotonic(),
                probe_id=command.probe_id,
                endpoint=command.endpoint,
                healthy=failure is None,
                failure=failure,
                detail=detail,
            )
        )

    async def _mqtt_probe(self, command: Probe, timeout_s: float) -> None:
        """A CONNECT under `<client id>-probe`, as the agent's probe does."""
        loop = self._fleet.loop
        outcome: asyncio.Future[Event] = loop.create_future()

        def settle_on_loop(event: Event) -> None:
            if not outcome.done():
                outcome.set_result(event)

        def settle(event: Event) -> None:  # CRT thread
            loop.call_soon_threadsafe(settle_on_loop, event)

        settings = self.device.machine.settings
        probe_settings = replace(settings, client_id=f"{settings.client_id}-probe")
        connection = CrtConnection(probe_settings, self._fleet.plumbing, settle)
        connection.connect(command.probe_id, command.endpoint)
        try:
            async with asyncio.timeout(timeout_s):
                event = await outcome
        except TimeoutError:
            raise ProbeError(FailureKind.TIMEOUT, f"no CONNACK in {timeout_s:g} s") from None
        finally:
            connection.close()
        if isinstance(event, ConnectFailed):
            raise ProbeError(event.failure, event.detail)

    # -- telemetry -------------------------------------------------------

    def _produce(self) -> None:
        fleet = self._fleet
        if not fleet.producing:
            return
        self.device.produce(time.monotonic())
        self._pump()
        self._ticker = fleet.loop.call_later(fleet.telemetry.interval_s, self._produce)

    def _pump(self) -> None:
        attempt = self.device.connected_attempt
        if attempt is None:
            return
        telemetry = self._fleet.telemetry
        for message in self.device.take_sendable():
            payload = b"%s %d %.3f " % (self._prefix, message.sequence, time.time())
            payload = payload.ljust(telemetry.payload_bytes, b".")
            future = self._connection.publish(attempt, self._topic, payload, telemetry.qos)
            if future is None:
                self.device.not_acknowledged(message.sequence)
                continue
            future.add_done_callback(self._on_publish_done(message.sequence, attempt))

    def _on_publish_done(self, sequence: int, attempt: int) -> Callable[[Future[Any]], None]:
        def done(future: Future[Any]) -> None:  # CRT thread
            exc = future.exception()
            now = time.monotonic()
            self._fleet.inbox.post(lambda: self._published(sequence, attempt, exc, now))

        return done

    def _published(
        self, sequence: int, attempt: int, exc: BaseException | None, now: float
    ) -> None:
        if exc is None:
            self.device.acknowledged(sequence, attempt, now)
            self._pump()
            return
        self.device.not_acknowledged(sequence)
        name = crt_error_name(exc)
        self.feed(PublishFailed(now=now, attempt=attempt, failure=classify_loss(name), detail=name))

    def _heartbeat(self, command: PublishHeartbeat) -> None:
        topic = self.device.machine.settings.heartbeat.topic
        if not topic:
            return
        future = self._connection.publish(command.attempt, topic, b"%d" % command.sequence, 1)
        if future is None:
            return
        attempt = command.attempt

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                name, now = crt_error_name(exc), time.monotonic()
                self._post(
                    PublishFailed(
                        now=now, attempt=attempt, failure=classify_loss(name), detail=name
                    )
                )

        future.add_done_callback(done)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("device task failed", exc_info=task.exception())
