"""Endpoints and what DNS says about them (pure).

Conventions follow the AWS "Disaster Recovery for AWS IoT" solution so its
users can drop the agent in unchanged: a CNAME that Route 53 points at the
healthy region's endpoint, and a TXT record at the underscore name holding
`{"primary": "us-east-1", "secondary": "us-west-2"}`. The region is the third
label of an AWS IoT endpoint (`xxxx-ats.iot.us-east-1.amazonaws.com`).
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import json
from dataclasses import dataclass, field

from iotdr.agent.core.errors import TxtError


class Role(enum.Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str
    port: int = 8883
    # The hash, worked out once: the virtual engine looks an endpoint up
    # in a dict on most events, and hashing a fresh (host, port) tuple each
    # time cost more than the lookup.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.host or not 0 < self.port < 65536:
            raise ValueError(f"bad endpoint {self.host!r}:{self.port}")
        object.__setattr__(self, "_hash", hash((self.host, self.port)))

    @property
    def region(self) -> str | None:
        return region_of(self.host)

    # Equality and hashing as the dataclass would generate them, written out
    # so that mypyc compiles them: every device's core compares endpoints
    # on most events (see events.py on what the generated ones cost).
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Endpoint)
        return self.host == other.host and self.port == other.port

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        # Rebuilt from its fields: a string's hash differs between processes.
        return _endpoint, (self.host, self.port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _endpoint(host: str, port: int) -> Endpoint:
    return Endpoint(host=host, port=port)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionRoles:
    """The TXT record's statement of which region plays which role."""

    primary: str
    secondary: str

    # Written out so that mypyc compiles them, as Endpoint's: the core's
    # shared topologies are looked up by roles on every DNS answer.
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, RegionRoles)
        return self.primary == other.primary and self.secondary == other.secondary

    def __hash__(self) -> int:
        return hash((self.primary, self.secondary))

    def role_of(self, region: str | None) -> Role:
        if region == self.primary:
            return Role.PRIMARY
        if region == self.secondary:
            return Role.SECONDARY
        return Role.UNKNOWN


# The functions below make immutable values from text. Every device of a
# simulated fleet calls them with the same few arguments (the fleet's DNS
# answer, its two endpoints), so they share one value each instead of a
# million copies, and each is worked out once (a core asks an endpoint's
# region on most events); the daemon's bounded cache holds a handful.
SHARED_VALUES = 256


@functools.lru_cache(maxsize=SHARED_VALUES)
def region_of(host: str) -> str | None:
    """The third label of an IoT endpoint host name, or None if it has fewer."""
    labels = host.rstrip(".").split(".")
    return labels[2] if len(labels) >= 4 and labels[1] == "iot" else None


def normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


@functools.lru_cache(maxsize=SHARED_VALUES)
def endpoint_at(host: str, port: int) -> Endpoint:
    """The endpoint for a host name as configured or as DNS names it."""
    return Endpoint(host=normalise_host(host), port=port)


@functools.lru_cache(maxsize=SHARED_VALUES)
def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """True if the host matches one of the shell-style patterns (case-insensitive)."""
    name = normalise_host(host)
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in allowlist)


@functools.lru_cache(maxsize=SHARED_VALUES)
def parse_region_roles(text: str) -> RegionRoles:
    """Parse the TXT record text; raise TxtError if it is not the expected JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TxtError(f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TxtError("not a JSON object")
    primary, secondary = data.get("primary"), data.get("secondary")
    if not isinstance(primary, str) or not isinstance(secondary, str) or not primary:
        raise TxtError('needs string fields "primary" and "secondary"')
    if primary == secondary:
        raise TxtError("primary and secondary name the same region")
    return RegionRoles(primary=primary, secondary=secondary)


@functools.lru_cache(maxsize=SHARED_VALUES)
def with_region(endpoint: Endpoint, region: str) -> Endpoint:
    """The same account endpoint in another region (AWS IoT endpoints differ
    only in the region label)."""
    labels = endpoint.host.rstrip(".").split(".")
    if region_of(endpoint.host) is None:
        raise ValueError(f"{endpoint.host} is not an IoT endpoint host name")
    labels[2] = region
    return Endpoint(host=".".join(labels), port=endpoint.port)
