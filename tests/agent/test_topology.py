"""Shared topologies and their kept candidates give what building each
anew gave (the reference functions below are the code before sharing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iotdr.agent.core.endpoints import (
    Endpoint,
    RegionRoles,
    endpoint_at,
    normalise_host,
    region_of,
)
from iotdr.agent.core.topology import Topology
from tests.agent.world import make_settings

REGIONS = ["region-a", "region-b", "region-c"]
endpoints = st.builds(
    lambda name, region, port: Endpoint(host=f"{name}-ats.iot.{region}.example", port=port),
    st.sampled_from(["abc", "xyz"]),
    st.sampled_from(REGIONS),
    st.sampled_from([8883, 443]),
)
hosts = st.one_of(
    st.builds(lambda e: e.host.upper() + ".", endpoints),
    st.sampled_from(["elsewhere.example", "abc-ats.iot.region-a.example"]),
)
roles = st.one_of(
    st.none(),
    st.builds(
        lambda pair: RegionRoles(primary=pair[0], secondary=pair[1]),
        st.lists(st.sampled_from(REGIONS), min_size=2, max_size=2, unique=True),
    ),
)


def reference_candidates(topology: Topology) -> list[Endpoint]:
    ordered: list[Endpoint] = []
    partner = topology._dns_partner()
    for endpoint in (topology.preferred, partner, topology.primary, topology.secondary):
        if endpoint is not None and endpoint not in ordered:
            ordered.append(endpoint)
    return ordered


def reference_with_dns(
    topology: Topology, target_host: str, new_roles: RegionRoles | None
) -> Topology:
    host = normalise_host(target_host)
    port = next(
        (
            e.port
            for e in (topology.primary, topology.secondary)
            if e is not None and e.host == host
        ),
        topology.default_port,
    )
    return Topology(
        primary=topology.primary,
        secondary=topology.secondary,
        dns_target=endpoint_at(host, port),
        roles=new_roles if new_roles is not None else topology.roles,
    )


@given(
    st.one_of(st.none(), endpoints),
    st.one_of(st.none(), endpoints),
    st.one_of(st.none(), endpoints),
    roles,
)
def test_kept_candidates_are_the_ordered_endpoints(
    primary: Endpoint | None,
    secondary: Endpoint | None,
    target: Endpoint | None,
    region_roles: RegionRoles | None,
) -> None:
    topology = Topology(primary=primary, secondary=secondary, dns_target=target, roles=region_roles)
    assert topology.candidates() == reference_candidates(topology)
    topology.candidates().clear()  # a copy each time: the caller's to change
    assert topology.candidates() == reference_candidates(topology)


@given(
    st.one_of(st.none(), endpoints),
    st.one_of(st.none(), endpoints),
    roles,
    st.lists(st.tuples(hosts, roles), min_size=1, max_size=4),
)
def test_a_shared_topology_is_the_one_built_anew(
    primary: Endpoint | None,
    secondary: Endpoint | None,
    first_roles: RegionRoles | None,
    answers: list[tuple[str, RegionRoles | None]],
) -> None:
    shared = built = Topology(primary=primary, secondary=secondary, roles=first_roles)
    for host, answer_roles in answers:
        shared = shared.with_dns(host, answer_roles)
        built = reference_with_dns(built, host, answer_roles)
        assert shared == built
        assert shared.candidates() == built.candidates() == reference_candidates(built)
        assert shared.with_dns(host, answer_roles) is shared.with_dns(host, answer_roles)


def test_devices_with_one_configuration_share_its_topology() -> None:
    first, second = Topology.from_settings(make_settings()), Topology.from_settings(make_settings())
    assert first is second
    assert first.primary is not None and region_of(first.primary.host) == "region-a"
