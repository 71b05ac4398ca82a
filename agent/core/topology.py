"""Which endpoints exist, which one is preferred, what role each plays (pure).

Configuration gives a primary and/or a secondary; a DNS answer (CNAME target
plus TXT roles) can name the preferred endpoint and tell which region is
primary. The preferred endpoint is where the agent should be when it is
reachable: the CNAME target once DNS has answered, else the configured
primary. Every other known endpoint is a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotdr.agent.core.endpoints import (
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(primary=_endpoint(settings.primary), secondary=_endpoint(settings.secondary))

    @property
    def default_port(self) -> int:
        for endpoint in (self.primary, self.secondary):
            if endpoint is not None:
                return endpoint.port
        return 8883

    def with_dns(self, target_host: str, roles: RegionRoles | None) -> Topology:
        host = normalise_host(target_host)
        port = next(
            (e.port for e in (self.primary, self.secondary) if e is not None and e.host == host),
            self.default_port,
        )
        return Topology(
            primary=self.primary,
            secondary=self.secondary,
            dns_target=endpoint_at(host, port),
            roles=roles if roles is not None else self.roles,
        )

    @property
    def preferred(self) -> Endpoint | None:
        return self.dns_target or self.primary or self.secondary

    def candidates(self) -> list[Endpoint]:
        """Preferred first, then fallbacks; no duplicates."""
        ordered: list[Endpoint] = []
        for endpoint in (self.preferred, self._dns_partner(), self.primary, self.secondary):
            if endpoint is not None and endpoint not in ordered:
                ordered.append(endpoint)
        return ordered

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
