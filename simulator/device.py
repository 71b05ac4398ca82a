"""One simulated device: the agent's decision core plus a telemetry queue (pure).

`Device` owns a `Machine` (the daemon's own, with the same settings and
defaults) and the device's messages: each gets a sequence number when it is
produced, waits in the queue while the device is offline, is sent when a
connection is up (at most AWS IoT's 100 unacknowledged at a time) and is
done only when the region acknowledges it; a publish that fails goes back
into the queue, so delivery is at least once, as on a real device.

Like the core it wraps, it does no I/O and reads no clock: a driver (real
brokers or virtual time) feeds it events stamped with the time and carries
out the commands it returns. It records what happened (connect attempts,
every connection with its region and first acknowledgement) for the report.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from iotdr.agent.core.backoff import Rng
from iotdr.agent.core.commands import Command, Connect, Disconnect, Why
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import (
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    Event,
    PublishFailed,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import Machine, State
from iotdr.agent.core.settings import Settings
from iotdr.simulator.scenario import AWS_MAX_INFLIGHT


@dataclass(slots=True)
class Message:
    sequence: int
    produced_at: float


# Connection and DeviceRecord write their __init__ out (`init=False`):
# compiled by mypyc (virtual runs, simulator/compiled_build.py), a written
# __init__ is a few stores, the generated one an interpreted function
# (a virtual fleet makes a million records and three million connections).


@dataclass(slots=True, init=False)
class Connection:
    """One connection that reached CONNACK."""

    attempt: int
    region: str
    why: str
    connected_at: float
    first_ack_at: float | None = None
    ended_at: float | None = None

    def __init__(  # noqa: PLR0917 - the fields, in order, as the generated one
        self,
        attempt: int,
        region: str,
        why: str,
        connected_at: float,
        first_ack_at: float | None = None,
        ended_at: float | None = None,
    ) -> None:
        self.attempt = attempt
        self.region = region
        self.why = why
        self.connected_at = connected_at
        self.first_ack_at = first_ack_at
        self.ended_at = ended_at

    def __reduce__(self) -> tuple[type[Connection], tuple[object, ...]]:
        # Pickled as its fields in order: the slots' default state is 2 to
        # 3 times slower to dump and load, and compiled by mypyc the class
        # can only be rebuilt, not unpickled from its attributes.
        fields = (
            self.attempt, self.region, self.why,
            self.connected_at, self.first_ack_at, self.ended_at,
        )  # fmt: skip
        return (Connection, fields)


@dataclass(slots=True, init=False)
class DeviceRecord:
    """What one device did, for the report."""

    client_id: str
    attempts: list[float] = field(default_factory=list)  # when each Connect was issued
    connections: list[Connection] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # failed attempts by kind
    produced: int = 0
    acknowledged: int = 0
    resent: int = 0
    acknowledged_sequences: set[int] = field(default_factory=set)

    def __init__(  # noqa: PLR0917 - the fields, in order, as the generated one
        self,
        client_id: str,
        attempts: list[float] | None = None,
        connections: list[Connection] | None = None,
        failures: dict[str, int] | None = None,
        produced: int = 0,
        acknowledged: int = 0,
        resent: int = 0,
        acknowledged_sequences: set[int] | None = None,
    ) -> None:
        self.client_id = client_id
        self.attempts = [] if attempts is None else attempts
        self.connections = [] if connections is None else connections
        self.failures = {} if failures is None else failures
        self.produced = produced
        self.acknowledged = acknowledged
        self.resent = resent
        self.acknowledged_sequences = (
            set() if acknowledged_sequences is None else acknowledged_sequences
        )

    def __reduce__(self) -> tuple[type[DeviceRecord], tuple[object, ...]]:
        # As Connection's: its fields in order.
        fields = (
            self.client_id, self.attempts, self.connections, self.failures,
            self.produced, self.acknowledged, self.resent, self.acknowledged_sequences,
        )  # fmt: skip
        return (DeviceRecord, fields)

    def relative_to(self, t0: float) -> DeviceRecord:
        """The same record with every time counted from `t0`."""
        return replace(
            self,
            attempts=[t - t0 for t in self.attempts],
            connections=[
                replace(
                    c,
                    connected_at=c.connected_at - t0,
                    first_ack_at=None if c.first_ack_at is None else c.first_ack_at - t0,
                    ended_at=None if c.ended_at is None else c.ended_at - t0,
                )
                for c in self.connections
            ],
            failures=dict(self.failures),
        )


class Device:
    def __init__(
        self, client_id: str, settings: Settings, rng: Rng, *, max_inflight: int = AWS_MAX_INFLIGHT
    ) -> None:
        self.client_id = client_id
        self.machine = Machine(settings, rng)
        self.record = DeviceRecord(client_id=client_id)
        self._max_inflight = max_inflight
        self._connecting: dict[int, tuple[Endpoint, Why]] = {}
        self._current: Connection | None = None
        self._queue: deque[Message] = deque()
        self._inflight: dict[int, Message] = {}
        self._next_sequence = 0

    # ------------------------------------------------------------ the core

    def handle(self, event: Event) -> list[Command]:
        """Feed the core one event; returns its commands, recording both."""
        self._observe_event(event)
        commands = self.machine.handle(event)
        for command in commands:
            if isinstance(command, Connect):
                self.record.attempts.append(event.now)
                self._connecting[command.attempt] = (command.endpoint, command.why)
            elif isinstance(command, Disconnect):
                self._connecting.pop(command.attempt, None)
                self._end(command.attempt, event.now)
        return commands

    def _observe_event(self, event: Event) -> None:
        if isinstance(event, ConnectSucceeded):
            started = self._connecting.pop(event.attempt, None)
            if started is not None and self.machine.state is State.CONNECTING:
                endpoint, why = started
                self._current = Connection(
                    attempt=event.attempt,
                    region=endpoint.region or endpoint.host,
                    why=why.value,
                    connected_at=event.now,
                )
                self.record.connections.append(self._current)
        elif isinstance(event, ConnectFailed):
            if self._connecting.pop(event.attempt, None) is not None:
                kind = event.failure.value
                self.record.failures[kind] = self.record.failures.get(kind, 0) + 1
        elif isinstance(event, ConnectionLost) or (
            isinstance(event, PublishFailed) and event.failure is FailureKind.TIMEOUT
        ):
            self._end(event.attempt, event.now)

    def _end(self, attempt: int, now: float) -> None:
        current = self._current
        if current is not None and current.attempt == attempt:
            current.ended_at = now
            self._current = None
            self._requeue_inflight()

    # ---------------------------------------------------------- messages

    @property
    def connected_attempt(self) -> int | None:
        return self._current.attempt if self._current is not None else None

    @property
    def region(self) -> str | None:
        """The region the device is connected to now, if any."""
        return self._current.region if self._current is not None else None

    @property
    def backlog(self) -> int:
        return len(self._queue) + len(self._inflight)

    def produce(self, now: float) -> Message:
        """A new telemetry message, queued until a connection takes it."""
        message = Message(sequence=self._next_sequence, produced_at=now)
        self._next_sequence += 1
        self.record.produced += 1
        self._queue.append(message)
        return message

    def take_sendable(self) -> list[Message]:
        """Messages to publish now on the current connection (moved in flight)."""
        if self._current is None:
            return []
        out = []
        while self._queue and len(self._inflight) < self._max_inflight:
            message = self._queue.popleft()
            self._inflight[message.sequence] = message
            out.append(message)
        return out

    def acknowledged(self, sequence: int, attempt: int, now: float) -> None:
        """The region PUBACKed `sequence` sent on connection `attempt`."""
        message = self._inflight.pop(sequence, None)
        if message is None:
            return
        self.record.acknowledged += 1
        self.record.acknowledged_sequences.add(sequence)
        current = self._current
        if current is not None and current.attempt == attempt and current.first_ack_at is None:
            current.first_ack_at = now

    def not_acknowledged(self, sequence: int) -> None:
        """A publish failed: the message goes back to wait for a connection."""
        message = self._inflight.pop(sequence, None)
        if message is not None:
            self._requeue([message])

    def _requeue_inflight(self) -> None:
        messages = sorted(self._inflight.values(), key=lambda m: m.sequence)
        self._inflight.clear()
        self._requeue(messages)

    def _requeue(self, messages: list[Message]) -> None:
        self.record.resent += len(messages)
        self._queue.extendleft(reversed(messages))
