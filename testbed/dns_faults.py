"""DNS faults and record changes, each a real change in the real server.

- timeout: iptables drops DNS packets to the server (except the testbed's
  own, see topology.DNS_ADMIN_SOURCE); queries time out.
- servfail: the zone is expired inside Knot (`knotc zone-purge +expire`,
  zone file kept), so Knot answers SERVFAIL for every name in it; healing
  reloads the zone from its file.
- nxdomain: the CNAME and TXT records are deleted by dynamic update, so both
  names answer NXDOMAIN.
- refused: Knot is stopped; UDP queries meet ICMP port unreachable and TCP a
  reset. Healing starts it again.

state.records is the truth about what the zone should say. While a fault
hides the records, a CNAME/TXT change is only recorded, and healing writes
state.records back: the exact records from before the fault, or the ones
changed meanwhile.
"""

from dataclasses import replace

import dns.exception
import dns.rcode

from iotdr.testbed import dns_client, firewall, knot, processes
from iotdr.testbed.dns_records import DnsRecords
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.state import DnsFailMode, TestbedState
from iotdr.testbed.topology import CNAME_NAME


def _records_reachable(state: TestbedState) -> bool:
    return state.dns_fault in (None, DnsFailMode.TIMEOUT)


def change_records(rt: Runtime, state: TestbedState, records: DnsRecords) -> TestbedState:
    if _records_reachable(state):
        dns_client.apply_records(rt.netns, state.tsig, records)
    return replace(state, records=records)


def _answers_servfail(netns: str) -> bool:
    try:
        response = dns_client.query(netns, CNAME_NAME, "CNAME", timeout_s=0.2)
    except (dns.exception.Timeout, OSError):
        return False
    return response.rcode() == dns.rcode.SERVFAIL


def fail(rt: Runtime, state: TestbedState, mode: DnsFailMode) -> TestbedState:
    """Applies `mode` (healing another active DNS fault first)."""
    if state.dns_fault == mode:
        return state
    if state.dns_fault is not None:
        state = heal(rt, state)
    knot_pid = state.knot_pid
    if mode is DnsFailMode.TIMEOUT:
        firewall.add(rt, firewall.dns_timeout_rules())
    elif mode is DnsFailMode.SERVFAIL:
        knot.expire_zone(rt)
        processes.wait_until(
            lambda: _answers_servfail(rt.netns),
            pid=knot_pid,
            what="knotd (zone expiry)",
            log_path=rt.layout.log("knot"),
        )
    elif mode is DnsFailMode.NXDOMAIN:
        dns_client.delete_records(rt.netns, state.tsig)
    else:
        processes.stop([knot_pid], rt.netns_inode, kill_at_once=False)
        knot_pid = 0
    return replace(state, dns_fault=mode, knot_pid=knot_pid)


def heal(rt: Runtime, state: TestbedState) -> TestbedState:
    """Undoes the active DNS fault and serves state.records again."""
    knot_pid = state.knot_pid
    if state.dns_fault is DnsFailMode.TIMEOUT:
        firewall.remove(rt, firewall.dns_timeout_rules())
    elif state.dns_fault is DnsFailMode.SERVFAIL:
        knot.reload_zone(rt, knot_pid)
    elif state.dns_fault is DnsFailMode.REFUSED or not processes.is_running(knot_pid):
        knot_pid = knot.start(rt)
    dns_client.apply_records(rt.netns, state.tsig, state.records)
    return replace(state, dns_fault=None, knot_pid=knot_pid)
