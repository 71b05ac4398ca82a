"""Where the fleet should be: the right region at each moment of a run (pure).

The right region is the one DNS names (the CNAME target) if it is healthy,
else the other region if that one is healthy, else none. A region is
unhealthy while it is killed or blackholed; DNS failures change nothing
(the agent keeps its connection through them), and JITR only delays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from iotdr.agent.core.endpoints import region_of
from iotdr.simulator.scenario import Fault


@dataclass(slots=True)
class RegionsState:
    """The regions' health and the CNAME target, by region name."""

    regions: tuple[str, str]  # (primary, secondary) region names
    cname_region: str
    down: set[str] = field(default_factory=set)

    def expected(self) -> str | None:
        if self.cname_region not in self.down:
            return self.cname_region
        healthy = [r for r in self.regions if r not in self.down]
        return healthy[0] if healthy else None

    def apply(self, fault: Fault, role_to_region: Mapping[str, str]) -> None:
        if fault.region is not None:
            region = role_to_region[fault.region]
            if fault.fault in ("kill", "blackhole"):
                self.down.add(region)
            elif fault.fault in ("restore", "heal"):
                self.down.discard(region)
        if fault.fault == "cname" and fault.target is not None:
            self.cname_region = target_region(fault.target, role_to_region)


def target_region(target: str, role_to_region: Mapping[str, str]) -> str:
    """A CNAME target given as a role (primary) or a host name."""
    if target in role_to_region:
        return role_to_region[target]
    return region_of(target) or target


@dataclass(frozen=True, slots=True)
class Expectation:
    """The right region from `since` on (until the next expectation)."""

    since: float
    region: str | None
    fault: Fault | None


def expectations(
    faults: Sequence[tuple[float, Fault]],
    role_to_region: Mapping[str, str],
    *,
    start: float = 0.0,
) -> list[Expectation]:
    """The right region over time, given each fault with the time it took effect."""
    state = RegionsState(
        regions=(role_to_region["primary"], role_to_region["secondary"]),
        cname_region=role_to_region["primary"],
    )
    out = [Expectation(since=start, region=state.expected(), fault=None)]
    for at, fault in faults:
        state.apply(fault, role_to_region)
        out.append(Expectation(since=at, region=state.expected(), fault=fault))
    return out
