"""The DNS adapter against the testbed's Knot (real UDP, TCP and faults).

Each lookup runs in a thread moved into the testbed's namespace, with the
namespace's resolv.conf, as the agent inside it would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from iotdr.agent.core.events import DnsAnswered, DnsFailed, DnsFailure, Event
from iotdr.agent.core.settings import DnsSettings
from iotdr.agent.dns_lookup import lookup as dns_lookup
from iotdr.agent.dns_lookup import make_resolver
from iotdr.agent.dns_wire import EDNS_PAYLOAD
from iotdr.testbed.testbed import Testbed as TwoRegions
from iotdr.testbed.topology import CNAME_NAME, TXT_NAME, ZONE


def lookup(
    testbed: TwoRegions,
    name: str = CNAME_NAME,
    txt_name: str | None = TXT_NAME,
    resolv_conf: Path | None = None,
) -> Event:
    resolver = make_resolver(DnsSettings(timeout_s=1.0), resolv_conf or testbed.resolv_conf)
    with testbed.inside():
        return asyncio.run(dns_lookup(resolver, name, txt_name, lambda: 0.0))


def failure(event: Event) -> DnsFailure:
    assert isinstance(event, DnsFailed), event
    return event.failure


def test_cname_and_txt_are_answered(testbed: TwoRegions) -> None:
    event = lookup(testbed)
    assert isinstance(event, DnsAnswered)
    assert event.target == testbed.info.primary.host
    assert event.ttl == 5.0
    assert event.txt == '{"primary": "region-a", "secondary": "region-b"}'
    testbed.set_cname(testbed.info.secondary.host)
    moved = lookup(testbed)
    assert isinstance(moved, DnsAnswered) and moved.target == testbed.info.secondary.host


def test_a_txt_too_large_for_udp_comes_over_tcp(testbed: TwoRegions) -> None:
    text = '{"primary": "region-a", "secondary": "region-b", "pad": "' + "x" * 2000 + '"}'
    assert len(text) > EDNS_PAYLOAD  # Knot must truncate it over UDP
    testbed.set_txt(text)
    event = lookup(testbed)
    assert isinstance(event, DnsAnswered) and event.txt == text


def test_missing_names_and_records(testbed: TwoRegions) -> None:
    assert failure(lookup(testbed, f"nothere.{ZONE}")) is DnsFailure.NXDOMAIN
    # The region host has an address, no CNAME.
    assert failure(lookup(testbed, testbed.info.primary.host)) is DnsFailure.NO_ANSWER
    # No TXT: the CNAME is still an answer.
    event = lookup(testbed, txt_name=f"_nothere.{ZONE}")
    assert isinstance(event, DnsAnswered) and event.txt is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("timeout", DnsFailure.TIMEOUT),
        ("servfail", DnsFailure.SERVFAIL),
        ("nxdomain", DnsFailure.NXDOMAIN),
        # Knot stopped: the port-unreachable ICMP reaches the connected socket.
        ("refused", DnsFailure.SERVFAIL),
    ],
)
def test_dns_faults(testbed: TwoRegions, mode: str, expected: DnsFailure) -> None:
    testbed.dns_fail(mode)
    assert failure(lookup(testbed)) is expected
    testbed.dns_heal()
    assert isinstance(lookup(testbed), DnsAnswered)


def test_servers_are_asked_in_order(testbed: TwoRegions, tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    # Nothing serves DNS on 127.0.0.9: the next server answers.
    conf.write_text(f"# comment\nsearch {ZONE}\nnameserver 127.0.0.9\nnameserver 127.0.0.1\n")
    assert isinstance(lookup(testbed, resolv_conf=conf), DnsAnswered)
    conf.write_text("nameserver 127.0.0.9\n")
    event = lookup(testbed, resolv_conf=conf)
    assert failure(event) is DnsFailure.SERVFAIL
    assert isinstance(event, DnsFailed) and "127.0.0.9" in event.detail
    conf.write_text("options edns0\n")
    assert failure(lookup(testbed, resolv_conf=conf)) is DnsFailure.OTHER
    assert failure(lookup(testbed, resolv_conf=tmp_path / "missing")) is DnsFailure.OTHER
