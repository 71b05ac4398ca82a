"""What the decision core keeps between events (pure): its states and the
records of its connection, its failback prober, its DNS moves and its
counters, and what it shows the daemon (`Snapshot`, `DnsView`,
`History`). `Machine` (machine.py) owns one of each per device and is the
only one to change them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from iotdr.agent.core.commands import Why
from iotdr.agent.core.endpoints import Endpoint, Role


class State(enum.Enum):
    IDLE = "idle"
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"
    STOPPED = "stopped"

    # Members are singletons, so a hash by identity serves as well as
    # Enum's hash of the name, and runs in C: the core and the virtual
    # engine look members up in tables on every event.
    __hash__ = object.__hash__


# The classes below write their `__init__` out, as events do, so that mypyc
# compiles it: a generated one stays interpreted, and every device builds
# these (events.py says what that costs; test_written_inits.py checks them).


@dataclass(slots=True, kw_only=True, init=False)
class DnsView:
    """What the agent last learnt from DNS, for status and decisions."""

    target: str | None = None
    ttl: float | None = None
    txt: str | None = None
    answered_at: float | None = None
    rejected: int = 0
    failures: int = 0

    def __init__(
        self,
        *,
        target: str | None = None,
        ttl: float | None = None,
        txt: str | None = None,
        answered_at: float | None = None,
        rejected: int = 0,
        failures: int = 0,
    ) -> None:
        self.target = target
        self.ttl = ttl
        self.txt = txt
        self.answered_at = answered_at
        self.rejected = rejected
        self.failures = failures


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Status as the core sees it (monotonic times; the daemon converts)."""

    state: State
    endpoint: Endpoint | None
    role: Role
    preferred: Endpoint | None
    since: float | None
    failovers: int
    failbacks: int
    last_failover_s: float | None
    stability_window_s: float
    dns: DnsView
    last_error: str | None

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED


@dataclass(slots=True, init=False)
class Prober:
    """Failback probing state."""

    active: bool
    pending_id: int | None
    healthy_since: float | None
    window_s: float
    last_failback_at: float | None
    spread_s: float  # this device's share of the fleet's failback spread

    def __init__(self, window_s: float) -> None:
        self.active = False
        self.pending_id = None
        self.healthy_since = None
        self.window_s = window_s
        self.last_failback_at = None
        self.spread_s = 0.0


@dataclass(slots=True, init=False)
class DnsMoves:
    """Damping of CNAME moves (the DNS counterpart of `Prober`)."""

    hold_s: float
    last_change_at: float | None  # when DNS last named a new target
    last_move_at: float | None  # when the agent last followed one
    check_id: int | None  # probe of the new target before leaving
    check_target: Endpoint | None
    spread_until: float | None  # this device's share of the fleet's move spread

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.last_change_at = None
        self.last_move_at = None
        self.check_id = None
        self.check_target = None
        self.spread_until = None


@dataclass(slots=True, init=False)
class Attempt:
    id: int
    endpoint: Endpoint
    why: Why

    def __init__(self, id: int, endpoint: Endpoint, why: Why) -> None:
        self.id = id
        self.endpoint = endpoint
        self.why = why


@dataclass(slots=True, init=False)
class Counters:
    failovers: int
    failbacks: int
    last_failover_s: float | None

    def __init__(self, failovers: int, failbacks: int, last_failover_s: float | None) -> None:
        self.failovers = failovers
        self.failbacks = failbacks
        self.last_failover_s = last_failover_s


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """Counters that outlive a restart (the daemon keeps them in state_dir),
    so status tells the whole story."""

    failovers: int = 0
    failbacks: int = 0
    last_failover_s: float | None = None


NO_HISTORY: Final = History()


@dataclass(slots=True, init=False)
class Round:
    """Endpoints still to try before backing off, and what is scheduled next."""

    remaining: list[Endpoint]
    failed_rounds: int
    scheduled: Attempt | None  # next attempt once the RECONNECT timer fires
    # Made on the first JITR retry: most rounds have none, and an empty
    # dict per device is 64 MB in a fleet of a million.
    jitr_tries: dict[Endpoint, int] | None

    def __init__(self) -> None:
        self.remaining = []
        self.failed_rounds = 0
        self.scheduled = None
        self.jitr_tries = None
