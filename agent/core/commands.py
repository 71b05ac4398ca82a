"""Commands: what the decision core asks the adapters to do.

Like events, each one writes its `__init__` out so that mypyc compiles it
(`events.py` says why and what it costs otherwise).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import TimerName
from iotdr.agent.core.settings import ProbeDepth
from iotdr.agent.core.text import Text


class Why(enum.Enum):
    """Why a connection attempt is made; logged and counted in status."""

    START = "start"
    RECONNECT = "reconnect"
    FAILOVER = "failover"  # moving away from an endpoint that failed
    FAILBACK = "failback"  # returning to the preferred endpoint after probes
    DNS_MOVE = "dns-move"  # following a changed CNAME
    JITR_RETRY = "jitr-retry"
    CONFIG = "config"

    # Members are singletons, so a hash by identity serves as well as
    # Enum's hash of the name, and runs in C: the core and the virtual
    # engine look members up in tables on every event.
    __hash__ = object.__hash__


class Level(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Command:
    pass


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Connect(Command):
    """Open the cloud connection (after closing any other: one at a time)."""

    attempt: int
    endpoint: Endpoint
    why: Why

    def __init__(self, *, attempt: int, endpoint: Endpoint, why: Why) -> None:
        object.__setattr__(self, "attempt", attempt)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "why", why)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Disconnect(Command):
    attempt: int

    def __init__(self, *, attempt: int) -> None:
        object.__setattr__(self, "attempt", attempt)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Resolve(Command):
    name: str
    txt_name: str | None

    def __init__(self, *, name: str, txt_name: str | None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "txt_name", txt_name)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Probe(Command):
    probe_id: int
    endpoint: Endpoint
    depth: ProbeDepth

    def __init__(self, *, probe_id: int, endpoint: Endpoint, depth: ProbeDepth) -> None:
        object.__setattr__(self, "probe_id", probe_id)
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "depth", depth)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class ArmTimer(Command):
    """Fire `timer` at monotonic time `at`, replacing an earlier arming."""

    timer: TimerName
    at: float

    def __init__(self, *, timer: TimerName, at: float) -> None:
        object.__setattr__(self, "timer", timer)
        object.__setattr__(self, "at", at)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class CancelTimer(Command):
    timer: TimerName

    def __init__(self, *, timer: TimerName) -> None:
        object.__setattr__(self, "timer", timer)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class PublishHeartbeat(Command):
    attempt: int
    sequence: int

    def __init__(self, *, attempt: int, sequence: int) -> None:
        object.__setattr__(self, "attempt", attempt)
        object.__setattr__(self, "sequence", sequence)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Report(Command):
    """Something an operator should see in the log: `message`, put
    together only when read (`text.py` says why)."""

    level: Level
    text: Text

    def __init__(self, *, level: Level, text: Text) -> None:
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "text", text)

    @property
    def message(self) -> str:
        return str(self.text)
