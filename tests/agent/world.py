"""A virtual-time world that answers the decision core's commands.

Each endpoint is up, refusing, blackholed, JITR-pending or auth-rejecting;
DNS answers, fails or names a disallowed host. The world executes the core's
commands with plausible latencies, fires timers in virtual time and checks
the core's invariants on every step, so table tests and hypothesis tests
share one honest model instead of hand-written expectations.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
from dataclasses import dataclass, field

from iotdr.agent.core.commands import (
    ArmTimer,
    CancelTimer,
    Command,
    Connect,
    Disconnect,
    Probe,
    PublishHeartbeat,
    Resolve,
    Why,
)
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import (
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    DnsAnswered,
    DnsFailed,
    DnsFailure,
    Event,
    ProbeCompleted,
    Started,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import ROWS, Machine, State
from iotdr.agent.core.settings import Settings, parse_settings

PRIMARY = Endpoint(host="abc-ats.iot.region-a.example.test", port=8883)
SECONDARY = Endpoint(host="abc-ats.iot.region-b.example.test", port=8883)
EVIL = "abc-ats.iot.region-x.evil.test"


class Health(enum.Enum):
    UP = "up"
    REFUSING = "refusing"
    BLACKHOLED = "blackholed"
    AUTH_REJECT = "auth-reject"
    TLS_BAD = "tls-bad"


class DnsMode(enum.Enum):
    OK = "ok"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    EVIL = "evil"
    GARBAGE_TXT = "garbage-txt"


def make_settings(**overrides: object) -> Settings:
    data: dict[str, object] = {
        "client_id": "dev-1",
        "tls": {"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"},
        "endpoints": {
            "primary": {"host": PRIMARY.host},
            "secondary": {"host": SECONDARY.host},
        },
        "dns": {"name": "iot.example.test", "allowlist": ["*-ats.iot.*.example.test"]},
        "heartbeat": {"topic": "hb", "interval_s": 1.0},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            sub = dict(data.get(section, {}))  # type: ignore[call-overload]
            sub[name] = value
            data[section] = sub
        else:
            data[section] = value
    return parse_settings(data, "test.yaml")


class InvariantBrokenError(AssertionError):
    pass


@dataclass
class AttemptRecord:
    id: int
    endpoint: Endpoint
    why: Why
    start: float
    end: float | None = None
    may_have_sent_connect: bool = True


@dataclass
class World:
    settings: Settings
    seed: int = 0
    now: float = 0.0
    health: dict[Endpoint, Health] = field(
        default_factory=lambda: {PRIMARY: Health.UP, SECONDARY: Health.UP}
    )
    jitr_pending: dict[Endpoint, float] = field(default_factory=dict)  # accepted after time
    cname: Endpoint = PRIMARY
    dns_mode: DnsMode = DnsMode.OK
    ttl: float = 5.0
    machine: Machine = field(init=False)
    attempts: list[AttemptRecord] = field(default_factory=list)
    open_attempt: int | None = None
    connected_attempt: int | None = None
    failback_times: list[float] = field(default_factory=list)
    heartbeats: int = 0
    log: list[Command] = field(default_factory=list)
    _queue: list[tuple[float, int, Event]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _timers: dict[TimerName, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.machine = Machine(self.settings, random.Random(self.seed))

    # -- driving -------------------------------------------------------

    def start(self) -> None:
        self.feed(Started(now=self.now))

    def feed(self, event: Event) -> list[Command]:
        self._track(event)
        commands = self.machine.handle(event)
        self.log.extend(commands)
        if (
            isinstance(event, DnsFailed)
            or (isinstance(event, DnsAnswered) and event.target == EVIL)
        ) and any(isinstance(c, Disconnect | Connect) for c in commands):
            raise InvariantBrokenError(f"DNS trouble {event} changed the connection")
        if self.machine._row is not ROWS[self.machine.state]:  # what dispatch reads
            raise InvariantBrokenError(f"{self.machine.state} dispatches by another row")
        for command in commands:
            self._execute(command)
        return commands

    def run_until(self, until: float) -> None:
        while True:
            next_timer = min(self._timers.items(), key=lambda kv: kv[1], default=None)
            next_event = self._queue[0][0] if self._queue else None
            candidates = [t for t in (next_event, next_timer and next_timer[1]) if t is not None]
            if not candidates or min(candidates) > until:
                self.now = max(self.now, until)
                return
            at = min(candidates)
            self.now = max(self.now, at)
            if next_event is not None and next_event == at:
                _, _, event = heapq.heappop(self._queue)
                self.feed(event)
            else:
                assert next_timer is not None
                name = next_timer[0]
                del self._timers[name]
                self.feed(TimerFired(now=self.now, timer=name))

    def _track(self, event: Event) -> None:
        """Mirror connection results into the world's book-keeping."""
        if not isinstance(event, ConnectSucceeded | ConnectFailed | ConnectionLost):
            return
        record = next((r for r in self.attempts if r.id == event.attempt), None)
        if record is None:
            return
        if isinstance(event, ConnectSucceeded):
            if record.end is None:  # not abandoned: CONNECT was sent by now
                record.end = event.now
                self.connected_attempt = event.attempt
            return
        if record.end is None:
            record.end = event.now
            record.may_have_sent_connect = not (
                isinstance(event, ConnectFailed) and event.failure.proves_no_connect_sent
            )
        if self.open_attempt == event.attempt:
            self.open_attempt = None
        if self.connected_attempt == event.attempt:
            self.connected_attempt = None

    def _later(self, delay: float, event_factory: type[Event], **fields: object) -> None:
        at = self.now + delay
        event = event_factory(now=at, **fields)
        heapq.heappush(self._queue, (at, next(self._seq), event))

    # -- executing commands ----------------------------------------------

    def _execute(self, command: Command) -> None:
        if isinstance(command, ArmTimer):
            self._timers[command.timer] = max(command.at, self.now)
        elif isinstance(command, CancelTimer):
            self._timers.pop(command.timer, None)
        elif isinstance(command, Connect):
            self._connect(command)
        elif isinstance(command, Disconnect):
            self._disconnect(command)
        elif isinstance(command, Resolve):
            self._resolve()
        elif isinstance(command, Probe):
            healthy = (
                self.health[command.endpoint] is Health.UP
                if (command.endpoint in self.health)
                else False
            )
            self._later(
                0.01,
                ProbeCompleted,
                probe_id=command.probe_id,
                endpoint=command.endpoint,
                healthy=healthy,
            )
        elif isinstance(command, PublishHeartbeat):
            self.heartbeats += 1

    def _check_spacing(self, start: float) -> None:
        minimum = self.settings.connection.min_connect_interval_s
        for previous in self.attempts:
            if previous.end is None or not previous.may_have_sent_connect:
                continue
            if start - previous.end < minimum - 1e-9:
                raise InvariantBrokenError(
                    f"CONNECT at {start:.3f} within {minimum} s of attempt "
                    f"{previous.id} that ended at {previous.end:.3f}"
                )

    def _connect(self, command: Connect) -> None:
        if self.open_attempt is not None:
            raise InvariantBrokenError(f"Connect {command} while attempt {self.open_attempt} open")
        self._check_spacing(self.now)
        record = AttemptRecord(command.attempt, command.endpoint, command.why, self.now)
        self.attempts.append(record)
        self.open_attempt = command.attempt
        if command.why is Why.FAILBACK:
            self.failback_times.append(self.now)
        health = self.health.get(command.endpoint, Health.REFUSING)
        if health is Health.REFUSING:
            self._later(0.002, ConnectFailed, attempt=command.attempt, failure=FailureKind.REFUSED)
        elif health is Health.BLACKHOLED:
            self._later(
                self.settings.connection.connect_timeout_s,
                ConnectFailed,
                attempt=command.attempt,
                failure=FailureKind.TIMEOUT,
            )
        elif health is Health.TLS_BAD:
            # s2n-tls "blinding" holds a failed handshake back 10-30 s.
            self._later(15.0, ConnectFailed, attempt=command.attempt, failure=FailureKind.TLS)
        elif health is Health.AUTH_REJECT:
            self._later(0.03, ConnectFailed, attempt=command.attempt, failure=FailureKind.AUTH)
        elif self.jitr_pending.get(command.endpoint, -1.0) > self.now:
            self._later(
                0.03, ConnectFailed, attempt=command.attempt, failure=FailureKind.JITR_HANGUP
            )
        else:
            self._later(0.05, ConnectSucceeded, attempt=command.attempt)

    def _disconnect(self, command: Disconnect) -> None:
        for record in self.attempts:
            if record.id == command.attempt and record.end is None:
                record.end = self.now
        if self.open_attempt == command.attempt:
            self.open_attempt = None
        if self.connected_attempt == command.attempt:
            self.connected_attempt = None

    def _resolve(self) -> None:
        mode = self.dns_mode
        if mode is DnsMode.SERVFAIL:
            self._later(0.01, DnsFailed, failure=DnsFailure.SERVFAIL)
        elif mode is DnsMode.TIMEOUT:
            self._later(self.settings.dns.timeout_s, DnsFailed, failure=DnsFailure.TIMEOUT)
        else:
            target = EVIL if mode is DnsMode.EVIL else self.cname.host
            txt = (
                "{garbage"
                if mode is DnsMode.GARBAGE_TXT
                else ('{"primary": "region-a", "secondary": "region-b"}')
            )
            self._later(0.01, DnsAnswered, target=target, ttl=self.ttl, txt=txt)

    # -- faults ------------------------------------------------------------

    def set_health(self, endpoint: Endpoint, health: Health) -> None:
        self.health[endpoint] = health
        if health is Health.UP or self.connected_attempt is None:
            return
        record = next(r for r in self.attempts if r.id == self.connected_attempt)
        if record.endpoint != endpoint:
            return
        kind = FailureKind.TIMEOUT if health is Health.BLACKHOLED else FailureKind.CLOSED
        # A blackhole shows after keepalive/ack timeouts; a kill at once.
        delay = 4.0 if health is Health.BLACKHOLED else 0.001
        self._later(delay, ConnectionLost, attempt=record.id, failure=kind)

    @property
    def state(self) -> State:
        return self.machine.state

    def connected_to(self) -> Endpoint | None:
        snapshot = self.machine.snapshot()
        return snapshot.endpoint if snapshot.connected else None
