"""Which endpoints exist, which one is preferred, what role each plays (pure).

Configuration gives a primary and/or a secondary; a DNS answer (CNAME target
plus TXT roles) can name the preferred endpoint and tell which region is
primary. The preferred endpoint is where the agent should be when it is
reachable: the CNAME target once DNS has answered, else the configured
primary. Every other known endpoint is a fallback.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from iotdr.agent.core.endpoints import (
    SHARED_VALUES,
    Endpoint,
    RegionRoles,
    Role,
    endpoint_at,
    normalise_host,
    region_of,
    with_region,
)
from iotdr.agent.core.settings import EndpointSettings, Settings


def _endpoint(settings: EndpointSettings | None) -> Endpoint | None:
    return None if settings is None else endpoint_at(settings.host, settings.port)


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Topology:
    primary: Endpoint | None
    secondary: Endpoint | None
    dns_target: Endpoint | None = None
    roles: RegionRoles | None = None
    # What `candidates` gives, worked out once: a Topology never changes,
    # and the ones a fleet's devices hold are shared (`from_settings`,
    # `with_dns`), so this is done a few times per fleet, not per device.
    _candidates: tuple[Endpoint, ...] = field(init=False, repr=False, compare=False)

    # Written out so that mypyc compiles it (events.py says why).
    def __init__(
        self,
        *,
        primary: Endpoint | None,
        secondary: Endpoint | None,
        dns_target: Endpoint | None = None,
        roles: RegionRoles | None = None,
    ) -> None:
        object.__setattr__(self, "primary", primary)
        object.__setattr__(self, "secondary", secondary)
        object.__setattr__(self, "dns_target", dns_target)
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "_candidates", self._ordered())

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return _configured(_endpoint(settings.primary), _endpoint(settings.secondary))

    @property
    def default_port(self) -> int:
        for endpoint in (self.primary, self.secondary):
            if endpoint is not None:
                return endpoint.port
        return 8883

    def with_dns(self, target_host: str, roles: RegionRoles | None) -> Topology:
        return _with_dns(self.primary, self.secondary, self.roles, target_host, roles)

    @property
    def preferred(self) -> Endpoint | None:
        return self.dns_target or self.primary or self.secondary

    def candidates(self) -> list[Endpoint]:
        """Preferred first, then fallbacks; no duplicates."""
        return list(self._candidates)

    def _ordered(self) -> tuple[Endpoint, ...]:
        ordered: list[Endpoint] = []
        for endpoint in (self.preferred, self._dns_partner(), self.primary, self.secondary):
            if endpoint is not None and endpoint not in ordered:
                ordered.append(endpoint)
        return tuple(ordered)

    def _dns_partner(self) -> Endpoint | None:
        """The other region's endpoint, when the TXT roles name it: a
        configured endpoint in that region, else the target's host name with
        the region label swapped (AWS IoT endpoints differ only there)."""
        target, roles = self.dns_target, self.roles
        if target is None or roles is None:
            return None
        role = roles.role_of(target.region)
        if role is Role.UNKNOWN:
            return None
        other = roles.secondary if role is Role.PRIMARY else roles.primary
        for endpoint in (self.primary, self.secondary):
            if endpoint is not None and endpoint.region == other:
                return endpoint
        return with_region(target, other)

    def role_of(self, endpoint: Endpoint) -> Role:
        if self.roles is not None:
            role = self.roles.role_of(region_of(endpoint.host))
            if role is not Role.UNKNOWN:
                return role
        if endpoint == self.primary:
            return Role.PRIMARY
        if endpoint == self.secondary:
            return Role.SECONDARY
        return Role.UNKNOWN


# A fleet's devices share a configuration and hear the same DNS answers:
# they share the Topology each makes (one value per combination, as
# endpoints.py does for endpoints), rather than each building its own.


@functools.lru_cache(maxsize=SHARED_VALUES)
def _configured(primary: Endpoint | None, secondary: Endpoint | None) -> Topology:
    return Topology(primary=primary, secondary=secondary)


@functools.lru_cache(maxsize=SHARED_VALUES)
def _with_dns(
    primary: Endpoint | None,
    secondary: Endpoint | None,
    roles_before: RegionRoles | None,
    target_host: str,
    roles: RegionRoles | None,
) -> Topology:
    """`Topology.with_dns`, which depends on nothing else of the topology."""
    host = normalise_host(target_host)
    port = next(
        (e.port for e in (primary, secondary) if e is not None and e.host == host),
        _configured(primary, secondary).default_port,
    )
    return Topology(
        primary=primary,
        secondary=secondary,
        dns_target=endpoint_at(host, port),
        roles=roles if roles is not None else roles_before,
    )
