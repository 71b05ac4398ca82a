"""iptables rules inside a testbed's namespace: packets that silently vanish.

Rules are DROP, never REJECT: a blackholed peer must look like a dead path
(established connections hang, SYNs time out), which is the failure the
agent can only detect by keepalive and timeouts. Each rule carries a comment
naming its fault, and removal deletes exactly the rules that were added.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from iotdr.testbed import processes
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.topology import DNS_ADDRESS, DNS_ADMIN_SOURCE, DNS_PORT


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    match: tuple[str, ...]
    comment: str

    def spec(self) -> list[str]:
        return [self.chain, *self.match, "-m", "comment", "--comment", self.comment, "-j", "DROP"]


def blackhole_rules(region_name: str, address: str) -> list[Rule]:
    # On loopback every packet passes OUTPUT: requests carry the region's
    # address as destination, replies as source.
    comment = f"iotdr blackhole {region_name}"
    return [
        Rule("OUTPUT", ("-d", address), comment),
        Rule("OUTPUT", ("-s", address), comment),
    ]


def dns_timeout_rules() -> list[Rule]:
    # The testbed's own updates and readiness checks come from
    # DNS_ADMIN_SOURCE and still get through.
    comment = "iotdr dns-fail timeout"
    not_ours = ("-d", DNS_ADDRESS, "!", "-s", DNS_ADMIN_SOURCE)
    return [
        Rule("INPUT", (*not_ours, "-p", protocol, "--dport", str(DNS_PORT)), comment)
        for protocol in ("udp", "tcp")
    ]


def _iptables(rt: Runtime, action: str, rule: Rule) -> list[str]:
    # -w: wait for the xtables lock instead of failing when another call holds it.
    return rt.exec_argv([rt.tools.iptables, "-w", action, *rule.spec()])


def _present(rt: Runtime, rule: Rule) -> bool:
    try:
        processes.run(_iptables(rt, "-C", rule), "iptables -C")
    except TestbedError:
        return False
    return True


def add(rt: Runtime, rules: Sequence[Rule]) -> None:
    for rule in rules:
        if not _present(rt, rule):
            processes.run(_iptables(rt, "-A", rule), f"add rule {rule.comment}")


def remove(rt: Runtime, rules: Sequence[Rule]) -> None:
    for rule in rules:
        while _present(rt, rule):
            processes.run(_iptables(rt, "-D", rule), f"remove rule {rule.comment}")
