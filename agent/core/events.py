"""Events: what happened, fed into the decision core.

Every event carries `now`, the caller's monotonic clock in seconds: the core
never reads a clock. Results of commands carry the id of the command they
answer (`attempt`, `probe_id`) so a late answer about an abandoned
connection is recognised and ignored.

Each one is a frozen dataclass whose `__init__` is written out rather than
generated (`init=False`): mypyc (`simulator/compiled_build.py`) compiles a
written `__init__` to direct stores, while the generated one stays
interpreted and costs about twenty times as much (0.85 against 0.04 µs
for three fields), and a virtual fleet of a million devices makes some
fifty million of these. Equality, hashing, `repr` and immutability are
still the dataclass's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.settings import Settings


class TimerName(enum.Enum):
    RECONNECT = "reconnect"
    ATTEMPT = "attempt"  # deadline of a connection attempt
    DNS = "dns"
    PROBE = "probe"
    HEARTBEAT = "heartbeat"
    DNS_MOVE = "dns-move"  # a CNAME move held back by the move hold

    # Members are singletons, so a hash by identity serves as well as
    # Enum's hash of the name, and runs in C: the core and the virtual
    # engine look members up in tables on every event.
    __hash__ = object.__hash__


class DnsFailure(enum.Enum):
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    NXDOMAIN = "nxdomain"
    NO_ANSWER = "no-answer"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Event:
    now: float

    def __init__(self, *, now: float) -> None:
        object.__setattr__(self, "now", now)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Started(Event):
    def __init__(self, *, now: float) -> None:
        object.__setattr__(self, "now", now)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class StopRequested(Event):
    def __init__(self, *, now: float) -> None:
        object.__setattr__(self, "now", now)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ConnectSucceeded(Event):
    attempt: int

    def __init__(self, *, now: float, attempt: int) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "attempt", attempt)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ConnectFailed(Event):
    attempt: int
    failure: FailureKind
    detail: str = ""

    def __init__(self, *, now: float, attempt: int, failure: FailureKind, detail: str = "") -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "attempt", attempt)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ConnectionLost(Event):
    attempt: int
    failure: FailureKind
    detail: str = ""

    def __init__(self, *, now: float, attempt: int, failure: FailureKind, detail: str = "") -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "attempt", attempt)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class PublishFailed(Event):
    """A QoS 1 PUBLISH (heartbeat or forwarded message) was not acknowledged;
    a timeout means the path is dead."""

    attempt: int
    failure: FailureKind
    detail: str = ""

    def __init__(self, *, now: float, attempt: int, failure: FailureKind, detail: str = "") -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "attempt", attempt)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class DnsAnswered(Event):
    target: str  # the CNAME target host name
    ttl: float
    txt: str | None  # the TXT record's text, None if it had none

    def __init__(self, *, now: float, target: str, ttl: float, txt: str | None) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "txt", txt)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class DnsFailed(Event):
    failure: DnsFailure
    detail: str = ""

    def __init__(self, *, now: float, failure: DnsFailure, detail: str = "") -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ProbeCompleted(Event):
    probe_id: int
    endpoint: Endpoint
    healthy: bool
    failure: FailureKind | None = None
    detail: str = ""

    def __init__(
        self,
        *,
        now: float,
        probe_id: int,
        endpoint: Endpoint,
        healthy: bool,
        failure: FailureKind | None = None,
        detail: str = "",
    ) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "probe_id", probe_id)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "healthy", healthy)
        object.__setattr__(self, "failure", failure)
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class TimerFired(Event):
    timer: TimerName

    def __init__(self, *, now: float, timer: TimerName) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "timer", timer)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ConfigChanged(Event):
    settings: Settings

    def __init__(self, *, now: float, settings: Settings) -> None:
        object.__setattr__(self, "now", now)
        object.__setattr__(self, "settings", settings)
