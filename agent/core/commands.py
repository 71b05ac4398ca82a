"""Commands: what the decision core asks the adapters to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import TimerName
from iotdr.agent.core.settings import ProbeDepth


class Why(enum.Enum):
    """Why a connection attempt is made; logged and counted in status."""

    START = "start"
    RECONNECT = "reconnect"
    FAILOVER = "failover"  # moving away from an endpoint that failed
    FAILBACK = "failback"  # returning to the preferred endpoint after probes
    DNS_MOVE = "dns-move"  # following a changed CNAME
    JITR_RETRY = "jitr-retry"
    CONFIG = "config"


class Level(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect(Command):
    """Open the cloud connection (after closing any other: one at a time)."""

    attempt: int
    endpoint: Endpoint
    why: Why


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect(Command):
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolve(Command):
    name: str
    txt_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(Command):
    probe_id: int
    endpoint: Endpoint
    depth: ProbeDepth


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmTimer(Command):
    """Fire `timer` at monotonic time `at`, replacing an earlier arming."""

    timer: TimerName
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(Command):
    timer: TimerName


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishHeartbeat(Command):
    attempt: int
    sequence: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Report(Command):
    """Something an operator should see in the log."""

    level: Level
    message: str
