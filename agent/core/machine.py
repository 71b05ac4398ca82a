"""The agent's decision core: a sans-I/O state machine.

Theory of operation
-------------------
`Machine.handle(event)` takes one event (something that happened, stamped
with the caller's monotonic time) and returns the commands the adapters must
carry out. It owns no socket, clock or random source: time arrives in
events, randomness comes from the injected `rng`. The daemon, every
simulated device and the virtual-time simulator run this same code.

The connection goes through the states below; `TRANSITIONS` is the whole
table of what each state does with each event (anything else is ignored:
a late answer about an abandoned attempt, say). Three watchers run beside
it whatever the state: DNS (re-resolve by TTL, follow a moved CNAME), the
failback prober (while connected anywhere but the preferred endpoint), and
the heartbeat.

  IDLE --Started--> RESOLVING (DNS configured) or CONNECTING
  RESOLVING --DnsAnswered/DnsFailed--> CONNECTING
  CONNECTING --ConnectSucceeded--> CONNECTED
  CONNECTING --ConnectFailed--> CONNECTING (next endpoint of the round)
                              | WAITING (JITR retry, backoff, CONNECT spacing)
  CONNECTED --ConnectionLost/PublishFailed--> CONNECTING | WAITING
  WAITING --TimerFired(reconnect)--> CONNECTING
  any --StopRequested--> STOPPED

A *round* tries each known endpoint once, in an order that depends on why
the round started; when all have failed, the next round waits a jittered,
capped backoff. Rules that hold in every state:
- at most one connection attempt or connection at a time (break before make);
- never two MQTT CONNECTs of one client id within `min_connect_interval_s`
  (AWS IoT: 1 CONNECT/s per client id); an attempt that failed before a
  CONNECT could be sent (refused, TCP timeout, TLS) does not count;
- a DNS failure or refused answer never touches the connection;
- a moved CNAME is followed only once its new target answers a probe (a
  working connection is never left for a target that cannot be resolved or
  reached), after this device's share of `connect_spread_s` so a fleet
  behind one caching resolver does not move in one storm, and not again
  within a move hold that doubles while the CNAME keeps changing, so a
  flapping CNAME cannot make the agent flap;
- failback needs the preferred endpoint healthy for a whole stability
  window of dense, jittered probes, plus this device's share of
  `connect_spread_s`, so a fleet does not fail back in one storm; a
  failback that does not last doubles the window, so a flapping primary
  cannot make the agent flap.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Final

from iotdr.agent.core.backoff import CoreRng, Rng, backoff_delay, core_rng
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
    Why,
)
from iotdr.agent.core.endpoints import (
    SHARED_VALUES,
    Endpoint,
    RegionRoles,
    Role,
    host_allowed,
    parse_region_roles,
    region_of,
)
from iotdr.agent.core.errors import MachineError, TxtError
from iotdr.agent.core.events import (
    ConfigChanged,
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    DnsAnswered,
    DnsFailed,
    Event,
    ProbeCompleted,
    PublishFailed,
    Started,
    StopRequested,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine_state import (
    NO_HISTORY,
    Attempt,
    Counters,
    DnsMoves,
    DnsView,
    History,
    Prober,
    Round,
    Snapshot,
    State,
)
from iotdr.agent.core.settings import Settings
from iotdr.agent.core.text import Text
from iotdr.agent.core.topology import Topology

# What other modules take from here (the state records live in machine_state).
__all__ = [
    "ANY_STATE",
    "ROWS",
    "TRANSITIONS",
    "DnsView",
    "History",
    "Machine",
    "Snapshot",
    "State",
]

# Loss kinds after which the endpoint just lost is tried last, not first:
# its path is dead (timeouts) or retrying soon cannot help (TLS, auth).
_SKIP_CURRENT_FIRST = frozenset({FailureKind.TIMEOUT, FailureKind.TLS, FailureKind.AUTH})

# The connection state table: (state, event type) -> handler name.
TRANSITIONS: Final[dict[tuple[State, type[Event]], str]] = {
    (State.IDLE, Started): "_start",
    (State.RESOLVING, DnsAnswered): "_first_dns_answer",
    (State.RESOLVING, DnsFailed): "_first_dns_failure",
    (State.CONNECTING, ConnectSucceeded): "_connected",
    (State.CONNECTING, ConnectFailed): "_connect_failed",
    (State.CONNECTING, TimerFired): "_attempt_timer",
    (State.CONNECTED, ConnectionLost): "_lost",
    (State.CONNECTED, PublishFailed): "_publish_failed",
    (State.WAITING, TimerFired): "_reconnect_timer",
}

# Watchers that run whatever the state (except IDLE and STOPPED).
ANY_STATE: Final[dict[type[Event], str]] = {
    DnsAnswered: "_dns_answer",
    DnsFailed: "_dns_failure",
    TimerFired: "_timer",
    ProbeCompleted: "_probe_completed",
    ConfigChanged: "_config_changed",
    StopRequested: "_stop",
}


def _rows() -> dict[State, dict[type[Event], str]]:
    """The two tables above as one row per state, event type -> handler
    name: the state's own transition, else the watcher (never in IDLE)."""
    rows: dict[State, dict[type[Event], str]] = {}
    for state in State:
        row = rows[state] = {}
        for event_type in {t for _, t in TRANSITIONS} | set(ANY_STATE):
            name = TRANSITIONS.get((state, event_type))
            if name is None and state is not State.IDLE:
                name = ANY_STATE.get(event_type)
            if name is not None:
                row[event_type] = name
    return rows


# Final: compiled (mypyc), read as C statics, not looked up by name per event.
ROWS: Final = _rows()


# A fleet's devices hear the same answers: worked out once for them all.
@functools.lru_cache(maxsize=SHARED_VALUES)
def unknown_regions(
    roles: RegionRoles, target: str, primary: Endpoint | None, secondary: Endpoint | None
) -> str | None:
    """Roles must name the CNAME target's region, and only regions the
    configuration (`primary`, `secondary`) knows when it names both."""
    named = {roles.primary, roles.secondary}
    region = region_of(target)
    if region is not None and region not in named:
        return f"names {sorted(named)}, not the CNAME target's region {region}"
    known = {e.region for e in (primary, secondary) if e}
    if None not in known and len(known) == 2 and not named <= known | {region}:
        return f"names {sorted(named - known)}, which no configured endpoint is in"
    return None


class _Described:
    """An endpoint as reports name it, "host:port (region R, role)", put
    together when read (`text.py`). The topology is the one of the moment:
    a Topology never changes, the machine replaces it."""

    __slots__ = ("endpoint", "topology")

    def __init__(self, endpoint: Endpoint, topology: Topology) -> None:
        self.endpoint = endpoint
        self.topology = topology

    def __str__(self) -> str:
        endpoint = self.endpoint
        region = endpoint.region or "?"
        return f"{endpoint} (region {region}, {self.topology.role_of(endpoint).value})"


def _connection_error(
    event: ConnectFailed | ConnectionLost | PublishFailed, endpoint: Endpoint
) -> Text:
    """The last error of a failed attempt or a lost connection, for status."""
    return Text("{.value}: {}: {}", event.failure, endpoint, event.detail, strip=": ")


class Machine:
    # A simulated fleet holds a million of these: no per-instance dict.
    __slots__ = (
        "_attempt",
        "_connect_sent_by",
        "_counters",
        "_dns",
        "_dns_moves",
        "_heartbeat_seq",
        "_interrupted_at",
        "_last_connected",
        "_last_error",
        "_next_id",
        "_out",
        "_prober",
        "_rng",
        "_round",
        "_row",
        "_since",
        "_topology",
        "settings",
        "state",
    )

    def __init__(self, settings: Settings, rng: Rng, *, history: History | None = None) -> None:
        self.settings = settings
        self._rng: CoreRng = core_rng(rng)
        self._topology = Topology.from_settings(settings)
        self.state = State.IDLE
        self._row = ROWS[State.IDLE]  # the table's row for `state`
        self._out: list[Command] | None = None  # while handling an event
        self._next_id = 0
        self._attempt: Attempt | None = None  # in flight or established
        self._last_connected: Endpoint | None = None
        self._since: float | None = None
        # Upper bound on when the last MQTT CONNECT may have been sent.
        self._connect_sent_by: float | None = None
        self._interrupted_at: float | None = None
        self._round = Round()
        self._prober = Prober(window_s=settings.failback.stability_window_s)
        self._dns_moves = DnsMoves(hold_s=settings.dns.move_hold_s)
        self._dns = DnsView()
        past = history or NO_HISTORY
        self._counters = Counters(past.failovers, past.failbacks, past.last_failover_s)
        self._heartbeat_seq = 0
        self._last_error: Text | None = None

    # ----------------------------------------------------------------- API

    def handle(self, event: Event) -> list[Command]:
        """Feed one event; return the commands to carry out, in order."""
        if self.state is State.STOPPED:
            return []
        if self.state is State.IDLE and not isinstance(event, Started):
            raise MachineError(f"{type(event).__name__} before Started")
        name = self._row.get(type(event))
        if name is None:
            return []
        # A list for this event's commands only, none kept in between:
        # a simulated fleet's million machines would each hold one.
        out: list[Command] = []
        self._out = out
        self._call(name, event)
        self._out = None
        return out

    def snapshot(self) -> Snapshot:
        active = self.state in (State.CONNECTING, State.CONNECTED)
        endpoint = self._attempt.endpoint if self._attempt and active else None
        return Snapshot(
            state=self.state,
            endpoint=endpoint,
            role=self._topology.role_of(endpoint) if endpoint else Role.UNKNOWN,
            preferred=self._topology.preferred,
            since=self._since,
            failovers=self._counters.failovers,
            failbacks=self._counters.failbacks,
            last_failover_s=self._counters.last_failover_s,
            stability_window_s=self._prober.window_s,
            dns=replace(self._dns),
            last_error=None if self._last_error is None else str(self._last_error),
        )

    def _call(self, name: str, event: Event) -> None:
        """Run the handler that the table names. Written out, most frequent
        first, so that compiled code calls each method directly: a method
        looked up in a table is a generic Python call, which cost more than
        the commonest handlers themselves. `test_machine.py` checks that
        every name in the tables calls the method of that name."""
        if name == "_timer":
            self._timer(event)
        elif name == "_probe_completed":
            self._probe_completed(event)
        elif name == "_reconnect_timer":
            self._reconnect_timer(event)
        elif name == "_connected":
            self._connected(event)
        elif name == "_dns_answer":
            self._dns_answer(event)
        elif name == "_first_dns_answer":
            self._first_dns_answer(event)
        elif name == "_start":
            self._start(event)
        elif name == "_lost":
            self._lost(event)
        elif name == "_connect_failed":
            self._connect_failed(event)
        elif name == "_attempt_timer":
            self._attempt_timer(event)
        elif name == "_publish_failed":
            self._publish_failed(event)
        elif name == "_dns_failure":
            self._dns_failure(event)
        elif name == "_first_dns_failure":
            self._first_dns_failure(event)
        elif name == "_config_changed":
            self._config_changed(event)
        elif name == "_stop":
            self._stop(event)
        else:
            raise AssertionError(f"no handler {name}")

    # ------------------------------------------------------------ helpers

    def _emit(self, command: Command) -> None:
        # One at a time: compiled, a *args call packs a tuple to extend by.
        out = self._out
        assert out is not None, "commands are emitted only while an event is handled"
        out.append(command)

    def _report(self, level: Level, text: Text) -> None:
        self._emit(Report(level=level, text=text))

    def _set_state(self, state: State, now: float) -> None:
        if state is not self.state:
            self.state = state
            self._row = ROWS[state]
            self._since = now

    def _describe(self, endpoint: Endpoint) -> _Described:
        return _Described(endpoint, self._topology)

    def _spread(self) -> float:
        return self._rng.uniform(0.0, self.settings.connection.connect_spread_s)

    # --------------------------------------------------------- connecting

    def _start(self, event: Event) -> None:
        dns = self.settings.dns
        self._since = event.now
        if dns.name:
            self._set_state(State.RESOLVING, event.now)
            self._emit(Resolve(name=dns.name, txt_name=dns.txt_record))
        else:
            self._begin_round(event.now, self._topology.candidates(), Why.START, spread=True)

    def _begin_round(self, now: float, order: list[Endpoint], why: Why, *, spread: bool) -> None:
        self._round.remaining = list(order)
        self._round.scheduled = None
        if spread:
            first = self._round.remaining.pop(0)
            self._schedule(now, Attempt(id=0, endpoint=first, why=why), now + self._spread())
        else:
            self._try_next(now, why)

    def _try_next(self, now: float, why: Why) -> None:
        """Attempt the next endpoint of this round, or back off."""
        if self._round.remaining:
            endpoint = self._round.remaining.pop(0)
            self._connect(now, endpoint, why)
            return
        self._round.failed_rounds += 1
        self._round.jitr_tries = None
        delay = backoff_delay(self.settings.backoff, self._round.failed_rounds, self._rng)
        candidates = self._topology.candidates()
        if not candidates:
            self._set_state(State.WAITING, now)
            return
        self._round.remaining = candidates[1:]
        self._report(
            Level.WARNING,
            Text(
                "no endpoint reachable (round {}); retrying in {:.1f} s",
                self._round.failed_rounds,
                delay,
            ),
        )
        self._schedule(now, Attempt(id=0, endpoint=candidates[0], why=Why.RECONNECT), now + delay)

    def _schedule(self, now: float, attempt: Attempt, at: float) -> None:
        self._set_state(State.WAITING, now)
        self._round.scheduled = attempt
        self._emit(ArmTimer(timer=TimerName.RECONNECT, at=at))

    def _connect(self, now: float, endpoint: Endpoint, why: Why) -> None:
        """Connect now, or as soon as AWS IoT's CONNECT rate limit allows."""
        if self._connect_sent_by is not None:
            earliest = self._connect_sent_by + self.settings.connection.min_connect_interval_s
            if earliest > now:
                self._schedule(now, Attempt(id=0, endpoint=endpoint, why=why), earliest)
                return
        self._next_id += 1
        self._attempt = Attempt(id=self._next_id, endpoint=endpoint, why=why)
        self._round.scheduled = None
        self._set_state(State.CONNECTING, now)
        deadline = now + self.settings.connection.attempt_timeout_s
        self._emit(Connect(attempt=self._next_id, endpoint=endpoint, why=why))
        self._emit(ArmTimer(timer=TimerName.ATTEMPT, at=deadline))

    def _attempt_timer(self, event: Event) -> None:
        assert isinstance(event, TimerFired)
        if event.timer is not TimerName.ATTEMPT or self._attempt is None:
            self._timer(event)
            return
        # No answer in time: give up on this attempt as a timeout. It may
        # have sent CONNECT, so it counts against the CONNECT rate limit.
        attempt = self._attempt
        self._emit(Disconnect(attempt=attempt.id))
        self._connect_sent_by = event.now
        timeout = self.settings.connection.attempt_timeout_s
        self._connect_failed(
            ConnectFailed(
                now=event.now,
                attempt=attempt.id,
                failure=FailureKind.TIMEOUT,
                detail=f"no answer in {timeout:.0f} s",
            )
        )

    def _reconnect_timer(self, event: Event) -> None:
        assert isinstance(event, TimerFired)
        if event.timer is not TimerName.RECONNECT:
            self._timer(event)
            return
        scheduled = self._round.scheduled
        if scheduled is None:
            self._try_next(event.now, Why.RECONNECT)
        else:
            self._connect(event.now, scheduled.endpoint, scheduled.why)

    def _abandon(self, now: float) -> None:
        """Close the current attempt or connection before making another."""
        attempt = self._attempt
        if attempt is None:
            return
        if self.state in (State.CONNECTING, State.CONNECTED):
            self._emit(Disconnect(attempt=attempt.id))
            # An attempt cut short may have sent CONNECT up to now.
            if self.state is State.CONNECTING:
                self._connect_sent_by = now
                self._emit(CancelTimer(timer=TimerName.ATTEMPT))
            self._interrupted_at = now
        self._emit(CancelTimer(timer=TimerName.HEARTBEAT))
        self._stop_prober()

    def _move(self, now: float, endpoint: Endpoint, why: Why) -> None:
        """Leave the current endpoint for `endpoint`, the others as fallback."""
        self._abandon(now)
        others = [e for e in self._topology.candidates() if e != endpoint]
        self._round.remaining = others
        self._round.failed_rounds = 0
        self._round.scheduled = None
        self._emit(CancelTimer(timer=TimerName.RECONNECT))
        self._connect(now, endpoint, why)

    def _connected(self, event: Event) -> None:
        assert isinstance(event, ConnectSucceeded)
        attempt = self._attempt
        if attempt is None or event.attempt != attempt.id:
            return
        now = event.now
        self._connect_sent_by = now
        self._emit(CancelTimer(timer=TimerName.ATTEMPT))
        self._set_state(State.CONNECTED, now)
        self._round = Round()
        self._last_error = None
        moved = self._last_connected is not None and self._last_connected != attempt.endpoint
        took = None if self._interrupted_at is None else now - self._interrupted_at
        if moved:
            self._counters.failovers += 1
            self._counters.last_failover_s = took
        self._last_connected = attempt.endpoint
        self._interrupted_at = None
        described = self._describe(attempt.endpoint)
        if took is None:
            text = Text("connected to {} ({.value})", described, attempt.why)
        else:
            text = Text(
                "connected to {} ({.value}) in {:.0f} ms", described, attempt.why, took * 1000
            )
        self._report(Level.INFO, text)
        if self.settings.heartbeat.topic:
            self._emit(ArmTimer(timer=TimerName.HEARTBEAT, at=now))
        self._update_prober(now)

    def _connect_failed(self, event: Event) -> None:
        assert isinstance(event, ConnectFailed)
        attempt = self._attempt
        if attempt is None or event.attempt != attempt.id:
            return
        now = event.now
        self._emit(CancelTimer(timer=TimerName.ATTEMPT))
        if not event.failure.proves_no_connect_sent:
            self._connect_sent_by = now
        self._last_error = _connection_error(event, attempt.endpoint)
        self._note_failed_failback(now)
        # A failback goes to a region that knew us before the outage, so a
        # hang-up there is the region dying mid-handshake, not JITR: return.
        if (
            event.failure is FailureKind.JITR_HANGUP
            and attempt.why is not Why.FAILBACK
            and self._retry_jitr(now, attempt)
        ):
            return
        self._report(
            Level.WARNING,
            Text(
                "connect to {} failed: {.value} {}",
                self._describe(attempt.endpoint),
                event.failure,
                event.detail,
                strip=None,
            ),
        )
        self._try_next(now, Why.FAILOVER)

    def _retry_jitr(self, now: float, attempt: Attempt) -> bool:
        """Stay with an endpoint whose JITR is activating our certificate."""
        delays = self.settings.jitr.retry_delays_s
        jitr_tries = self._round.jitr_tries
        if jitr_tries is None:
            jitr_tries = self._round.jitr_tries = {}
        tries = jitr_tries.get(attempt.endpoint, 0)
        if tries >= len(delays):
            return False
        jitr_tries[attempt.endpoint] = tries + 1
        self._report(
            Level.INFO,
            Text(
                "{} hung up after TLS (just-in-time registration); retry {} in {:.1f} s",
                self._describe(attempt.endpoint),
                tries + 1,
                delays[tries],
            ),
        )
        retry = Attempt(id=0, endpoint=attempt.endpoint, why=Why.JITR_RETRY)
        earliest = now + delays[tries]
        if self._connect_sent_by is not None:
            earliest = max(
                earliest, self._connect_sent_by + self.settings.connection.min_connect_interval_s
            )
        self._schedule(now, retry, earliest)
        return True

    def _lost(self, event: Event) -> None:
        assert isinstance(event, ConnectionLost | PublishFailed)
        attempt = self._attempt
        if attempt is None or event.attempt != attempt.id:
            return
        now = event.now
        self._interrupted_at = now
        self._last_error = _connection_error(event, attempt.endpoint)
        self._report(
            Level.WARNING,
            Text(
                "lost {}: {.value} {}",
                self._describe(attempt.endpoint),
                event.failure,
                event.detail,
                strip=None,
            ),
        )
        self._note_failed_failback(now)
        self._emit(CancelTimer(timer=TimerName.HEARTBEAT))
        self._stop_prober()
        others = [e for e in self._topology.candidates() if e != attempt.endpoint]
        if event.failure in _SKIP_CURRENT_FIRST:
            order = [*others, attempt.endpoint]
        else:
            order = [attempt.endpoint, *others]
        self._begin_round(now, order, Why.FAILOVER, spread=True)

    def _publish_failed(self, event: Event) -> None:
        assert isinstance(event, PublishFailed)
        if self._attempt is None or event.attempt != self._attempt.id:
            return
        if event.failure is not FailureKind.TIMEOUT:
            self._report(Level.WARNING, Text("publish failed: {}", event.detail))
            return
        # The connection may still look open to the client: close it first.
        self._emit(Disconnect(attempt=event.attempt))
        self._lost(event)

    # ---------------------------------------------------------------- DNS

    def _first_dns_answer(self, event: Event) -> None:
        assert isinstance(event, DnsAnswered)
        self._dns_answer(event)
        self._begin_round(event.now, self._topology.candidates(), Why.START, spread=True)

    def _first_dns_failure(self, event: Event) -> None:
        assert isinstance(event, DnsFailed)
        self._dns_failure(event)
        if self._topology.candidates():
            self._begin_round(event.now, self._topology.candidates(), Why.START, spread=True)

    def _resolve_at(self, at: float) -> None:
        self._emit(ArmTimer(timer=TimerName.DNS, at=at))

    def _ttl_delay(self, ttl: float) -> float:
        dns = self.settings.dns
        return min(max(ttl, dns.min_ttl_s), dns.max_ttl_s)

    def _dns_answer(self, event: Event) -> None:
        assert isinstance(event, DnsAnswered)
        now, dns = event.now, self._dns
        self._resolve_at(now + self._ttl_delay(event.ttl))
        if not host_allowed(event.target, self.settings.dns.allowlist):
            dns.rejected += 1
            self._last_error = Text("dns: {} is outside the endpoint allowlist", event.target)
            self._report(
                Level.ERROR,
                Text(
                    "refused DNS answer {}: not in the allowlist {}; staying put",
                    event.target,
                    list(self.settings.dns.allowlist),
                ),
            )
            return
        roles = self._parse_txt(event.txt, event.target)
        if roles is None and event.txt is not None:
            dns.rejected += 1  # the CNAME still counts; the roles stay as they were
        elif self._last_error is not None and str(self._last_error).startswith("dns:"):
            self._last_error = None  # a good answer: an old DNS error is history
        previous = self._topology.preferred
        dns.target, dns.ttl, dns.txt, dns.answered_at = event.target, event.ttl, event.txt, now
        self._topology = self._topology.with_dns(event.target, roles)
        preferred = self._topology.preferred
        if previous is None or preferred == previous or preferred is None:
            self._update_prober(now)
            return
        self._note_dns_change(now)
        self._report(Level.INFO, Text("DNS moved {} to {}", self.settings.dns.name, preferred))
        self._consider_dns_move(now)

    def _note_dns_change(self, now: float) -> None:
        """A CNAME that changes again within the hold doubles it; one that
        stayed put for a whole hold restores it."""
        moves, dns = self._dns_moves, self.settings.dns
        if moves.last_change_at is not None and now - moves.last_change_at < moves.hold_s:
            moves.hold_s = min(moves.hold_s * 2, dns.max_move_hold_s)
            self._report(
                Level.WARNING,
                Text(
                    "{} keeps changing; following DNS moves at most every {:.0f} s",
                    dns.name,
                    moves.hold_s,
                ),
            )
        elif moves.last_change_at is not None:
            moves.hold_s = dns.move_hold_s
        moves.last_change_at = now
        moves.spread_until = None  # a new target: a new share of the spread

    def _consider_dns_move(self, now: float) -> None:
        """Go where DNS points, unless held back or already there; a working
        connection is left only after the new target answered a probe."""
        moves, target = self._dns_moves, self._topology.preferred
        current = self._attempt.endpoint if self._attempt else None
        active = self.state in (State.CONNECTED, State.CONNECTING)
        if target is None or (active and current == target):
            moves.check_id = moves.check_target = moves.spread_until = None
            self._update_prober(now)
            return
        if self.state not in (State.CONNECTED, State.CONNECTING, State.WAITING):
            return
        if moves.last_move_at is not None and now < moves.last_move_at + moves.hold_s:
            self._emit(ArmTimer(timer=TimerName.DNS_MOVE, at=moves.last_move_at + moves.hold_s))
            self._update_prober(now)
            return
        if self.state is not State.CONNECTED:
            self._follow_dns(now, target)  # nothing working to lose
            return
        # The fleet behind one caching resolver learns of the move at the
        # same moment: leave a working connection at this device's share of
        # `connect_spread_s`, as failbacks do, or the move is one storm.
        if moves.spread_until is None:
            moves.spread_until = now + self._spread()
        if now < moves.spread_until:
            self._emit(ArmTimer(timer=TimerName.DNS_MOVE, at=moves.spread_until))
            self._update_prober(now)
            return
        self._next_id += 1
        moves.check_id, moves.check_target = self._next_id, target
        self._emit(
            Probe(probe_id=self._next_id, endpoint=target, depth=self.settings.failback.probe_depth)
        )

    def _dns_target_checked(self, event: ProbeCompleted) -> None:
        moves = self._dns_moves
        moves.check_id = moves.check_target = None
        now = event.now
        current = self._attempt.endpoint if self._attempt else None
        if (
            event.endpoint != self._topology.preferred
            or self.state is not State.CONNECTED
            or current == event.endpoint
        ):
            return  # DNS changed again, or the connection moved or went: nothing to decide
        if event.healthy:
            self._follow_dns(now, event.endpoint)
            return
        moves.spread_until = None  # the failback prober takes it from here
        detail = f"{event.failure.value if event.failure else 'failed'} {event.detail}".rstrip()
        self._last_error = Text("dns: {} does not answer: {}", event.endpoint, detail)
        self._report(
            Level.WARNING,
            Text(
                "DNS names {} but it does not answer ({}); staying on {}",
                event.endpoint,
                detail,
                current,
            ),
        )
        self._update_prober(now)  # probes it on failback's schedule from now on

    def _follow_dns(self, now: float, target: Endpoint) -> None:
        self._dns_moves.last_move_at = now
        self._dns_moves.spread_until = None
        self._move(now, target, Why.DNS_MOVE)

    def _parse_txt(self, txt: str | None, target: str) -> RegionRoles | None:
        if txt is None:
            return None
        try:
            roles = parse_region_roles(txt)
            topology = self._topology
            problem = unknown_regions(roles, target, topology.primary, topology.secondary)
            if problem:
                raise TxtError(problem)
        except TxtError as exc:
            self._last_error = Text("dns: TXT {}: {}", self.settings.dns.txt_record, str(exc))
            self._report(Level.WARNING, Text("ignoring TXT record: {}", str(exc)))
            return None
        return roles

    def _dns_failure(self, event: Event) -> None:
        assert isinstance(event, DnsFailed)
        self._dns.failures += 1
        self._last_error = Text("dns: {.value} {}", event.failure, event.detail, strip=None)
        self._report(
            Level.WARNING,
            Text("DNS lookup failed ({.value}); keeping the current endpoint", event.failure),
        )
        self._resolve_at(event.now + self.settings.dns.retry_s)

    # ------------------------------------------------------------- timers

    def _timer(self, event: Event) -> None:
        assert isinstance(event, TimerFired)
        if event.timer is TimerName.DNS and self.settings.dns.name:
            dns = self.settings.dns
            assert dns.name is not None
            self._emit(Resolve(name=dns.name, txt_name=dns.txt_record))
        elif event.timer is TimerName.PROBE:
            self._probe_now()
        elif event.timer is TimerName.HEARTBEAT:
            self._heartbeat(event.now)
        elif event.timer is TimerName.DNS_MOVE:
            self._consider_dns_move(event.now)

    def _heartbeat(self, now: float) -> None:
        if self.state is not State.CONNECTED or self._attempt is None:
            return
        self._heartbeat_seq += 1
        self._emit(PublishHeartbeat(attempt=self._attempt.id, sequence=self._heartbeat_seq))
        self._emit(ArmTimer(timer=TimerName.HEARTBEAT, at=now + self.settings.heartbeat.interval_s))

    # ----------------------------------------------------------- failback

    def _update_prober(self, now: float) -> None:
        current = self._attempt.endpoint if self._attempt else None
        wanted = (
            self.settings.failback.enabled
            and self.state is State.CONNECTED
            and current is not None
            and self._topology.preferred not in (None, current)
        )
        if wanted and not self._prober.active:
            self._prober.active = True
            self._prober.healthy_since = None
            self._emit(
                ArmTimer(timer=TimerName.PROBE, at=now + self.settings.failback.probe_interval_s)
            )
        elif not wanted:
            self._stop_prober()

    def _stop_prober(self) -> None:
        if self._prober.active:
            self._prober.active = False
            self._prober.pending_id = None
            self._prober.healthy_since = None
            self._emit(CancelTimer(timer=TimerName.PROBE))

    def _probe_now(self) -> None:
        preferred = self._topology.preferred
        if not self._prober.active or preferred is None:
            return
        self._next_id += 1
        self._prober.pending_id = self._next_id
        self._emit(
            Probe(
                probe_id=self._next_id, endpoint=preferred, depth=self.settings.failback.probe_depth
            )
        )

    def _probe_completed(self, event: Event) -> None:
        assert isinstance(event, ProbeCompleted)
        # The optionals are tested for None first, here and below: compiled,
        # an int or an Endpoint compared with an optional one is a generic
        # comparison, with them both known it is a native one.
        check_id = self._dns_moves.check_id
        if check_id is not None and event.probe_id == check_id:
            self._dns_target_checked(event)
            return
        prober, failback = self._prober, self.settings.failback
        pending_id = prober.pending_id
        if not prober.active or pending_id is None or event.probe_id != pending_id:
            return
        prober.pending_id = None
        now = event.now
        preferred = self._topology.preferred
        if preferred is None or event.endpoint != preferred or not event.healthy:
            prober.healthy_since = None
            self._emit(ArmTimer(timer=TimerName.PROBE, at=now + failback.probe_interval_s))
            return
        if prober.healthy_since is None:
            prober.healthy_since = now
            # The fleet saw the primary return at the same moment and runs
            # the same window: spread the failbacks as reconnects are
            # spread, or they arrive as one storm of CONNECTs.
            prober.spread_s = self._spread()
            self._report(
                Level.INFO,
                Text(
                    "{} answers probes; failing back after {:.0f} s of health",
                    self._describe(preferred),
                    prober.window_s,
                ),
            )
        deadline = prober.healthy_since + prober.window_s + prober.spread_s
        if now >= deadline:
            self._failback(now, preferred)
            return
        # Dense, jittered probes inside the window, so a primary that flaps
        # in step with the probe interval is still caught down.
        gap = failback.stability_probe_interval_s * self._rng.uniform(0.75, 1.25)
        self._emit(ArmTimer(timer=TimerName.PROBE, at=min(now + gap, deadline)))

    def _failback(self, now: float, preferred: Endpoint) -> None:
        self._counters.failbacks += 1
        self._prober.last_failback_at = now
        self._report(Level.INFO, Text("failing back to {}", self._describe(preferred)))
        self._move(now, preferred, Why.FAILBACK)

    def _note_failed_failback(self, now: float) -> None:
        """A failback that did not last doubles the stability window; one that
        lasted a whole window restores it (route-flap dampening)."""
        prober, failback = self._prober, self.settings.failback
        if prober.last_failback_at is None:
            return
        if now - prober.last_failback_at < prober.window_s:
            prober.window_s = min(prober.window_s * 2, failback.max_stability_window_s)
            self._report(
                Level.WARNING,
                Text("failback did not hold; stability window now {:.0f} s", prober.window_s),
            )
        else:
            prober.window_s = failback.stability_window_s
        prober.last_failback_at = None

    # ------------------------------------------------------ config, stop

    def _config_changed(self, event: Event) -> None:
        assert isinstance(event, ConfigChanged)
        old, new = self.settings, event.settings
        self.settings = new
        topology = Topology.from_settings(new)
        if new.dns.name == old.dns.name and self._dns.target is not None:
            topology = topology.with_dns(self._dns.target, self._topology.roles)
        else:
            self._dns = DnsView()
        self._topology = topology
        if self._prober.last_failback_at is None:
            self._prober.window_s = new.failback.stability_window_s
        self._report(Level.INFO, Text("configuration reloaded"))
        if new.dns.name:
            self._resolve_at(event.now)
        else:
            self._emit(CancelTimer(timer=TimerName.DNS))
        current = self._attempt.endpoint if self._attempt else None
        identity_changed = (old.client_id, old.tls) != (new.client_id, new.tls)
        preferred = topology.preferred
        if (
            self.state in (State.CONNECTED, State.CONNECTING)
            and preferred is not None
            and (identity_changed or current not in topology.candidates())
        ):
            self._move(event.now, preferred, Why.CONFIG)
            return
        if self.state is State.CONNECTED:
            self._emit(CancelTimer(timer=TimerName.HEARTBEAT))
            if new.heartbeat.topic:
                self._emit(ArmTimer(timer=TimerName.HEARTBEAT, at=event.now))
            self._stop_prober()
            self._update_prober(event.now)

    def _stop(self, event: Event) -> None:
        if self._attempt is not None and self.state in (State.CONNECTING, State.CONNECTED):
            self._emit(Disconnect(attempt=self._attempt.id))
        for timer in TimerName:
            self._emit(CancelTimer(timer=timer))
        self._prober.active = False
        self._set_state(State.STOPPED, event.now)
        # The daemon logs "stopped" once its teardown is done.
        self._report(Level.INFO, Text("stop requested: closing the connection"))
