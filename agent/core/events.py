"""Events: what happened, fed into the decision core.

Every event carries `now`, the caller's monotonic clock in seconds: the core
never reads a clock. Results of commands carry the id of the command they
answer (`attempt`, `probe_id`) so a late answer about an abandoned
connection is recognised and ignored.
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


class DnsFailure(enum.Enum):
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    NXDOMAIN = "nxdomain"
    NO_ANSWER = "no-answer"
    OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Started(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRequested(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectSucceeded(Event):
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectFailed(Event):
    attempt: int
    failure: FailureKind
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost(Event):
    attempt: int
    failure: FailureKind
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishFailed(Event):
    """A QoS 1 PUBLISH (heartbeat or forwarded message) was not acknowledged;
    a timeout means the path is dead."""

    attempt: int
    failure: FailureKind
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsAnswered(Event):
    target: str  # the CNAME target host name
    ttl: float
    txt: str | None  # the TXT record's text, None if it had none


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsFailed(Event):
    failure: DnsFailure
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeCompleted(Event):
    probe_id: int
    endpoint: Endpoint
    healthy: bool
    failure: FailureKind | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    timer: TimerName


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanged(Event):
    settings: Settings
