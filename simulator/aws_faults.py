"""Faults on real AWS IoT, where no one can kill a region.

Two ways a fleet on real endpoints sees a region fail:

- **An outage as the devices see it.** Each Locust worker runs its devices
  in a network namespace of its own; the master tells every worker when,
  and each one adds iptables rules in that namespace for the region's
  endpoint addresses: `kill` rejects them (TCP reset: a dead region's
  load balancers refuse), `blackhole` drops them (a dead path: connections
  hang until keepalive and publish timeouts notice). `restore`/`heal`
  removes exactly those rules (one chain per region role). Addresses are
  the endpoint's A records when the fault starts; AWS IoT's rotate, so a
  long outage is re-applied by a second fault entry if needed.
- **A DNS failover**: `cname` changes the Route 53 record `iotdr cloud
  deploy` created (the failover record set `primary` of the CNAME): its
  value becomes the target region's endpoint, read from the `secondary`
  record set, and the call returns once Route 53 reports the change
  INSYNC. Devices see it when their resolvers' TTL runs out, as in life.

The testbed's fault verbs (testbed_faults) stay for the local testbed.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from iotdr.agent.core.endpoints import region_of
from iotdr.agent.core.errors import ConfigError
from iotdr.simulator.real_run import Target
from iotdr.simulator.scenario import Scenario, device_settings

if TYPE_CHECKING:
    from types_boto3_cloudformation.client import CloudFormationClient
    from types_boto3_route53.client import Route53Client
    from types_boto3_route53.type_defs import ResourceRecordSetTypeDef

OUTAGES = {"kill": "reject", "blackhole": "drop"}
HEALS = ("restore", "heal")


class AwsFaultError(Exception):
    """A fault that could not be applied; the message says why."""


# -- worker side: an outage in the worker's network namespace --------------


def chain(role: str) -> str:
    return f"iotdr-outage-{role}"


def region_addresses(hosts: Sequence[str]) -> list[str]:
    """Every IPv4 address the region's endpoint names resolve to now."""
    addresses: set[str] = set()
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, 443, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AwsFaultError(f"cannot resolve {host}: {exc}") from None
        addresses.update(str(info[4][0]) for info in infos)
    return sorted(addresses)


def outage_commands(role: str, addresses: Sequence[str], how: str) -> list[list[str]]:
    """iptables commands (without the namespace prefix) cutting `addresses`."""
    name = chain(role)
    target = ["-j", "DROP"] if how == "drop" else ["-j", "REJECT", "--reject-with", "tcp-reset"]
    commands = [["iptables", "-w", "-F", name]]
    for address in addresses:
        commands.append(["iptables", "-w", "-A", name, "-p", "tcp", "-d", address, *target])
        if how == "drop":  # replies too, as a dead path
            commands.append(["iptables", "-w", "-A", name, "-p", "tcp", "-s", address, *target])
    return commands


# A worker whose process already has a namespace of its own (a Kubernetes
# pod, a container) says so with this name instead of a named namespace.
OWN_NAMESPACE = "self"


@dataclass(frozen=True, slots=True)
class WorkerOutage:
    """iptables rules in one named network namespace (never the host's
    unless the worker says its namespace is its own: OWN_NAMESPACE)."""

    netns: str

    def __post_init__(self) -> None:
        if not self.netns:
            raise AwsFaultError(
                "worker-side faults need the worker's own network namespace "
                "(iotdr simulate worker --netns NS, or --netns self in a pod); "
                "refusing to touch this host's firewall"
            )

    def _run(self, argv: Sequence[str], check: bool = True) -> bool:
        prefix = [] if self.netns == OWN_NAMESPACE else ["ip", "netns", "exec", self.netns]
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise AwsFaultError(f"{' '.join(argv)}: {done.stderr.strip()[:200]}")
        return done.returncode == 0

    def _ensure_chain(self, role: str) -> None:
        name = chain(role)
        self._run(["iptables", "-w", "-N", name], check=False)  # exists already: fine
        for hook in ("OUTPUT", "INPUT"):
            if not self._run(["iptables", "-w", "-C", hook, "-j", name], check=False):
                self._run(["iptables", "-w", "-I", hook, "-j", name])

    def cut(self, role: str, addresses: Sequence[str], how: str) -> None:
        self._ensure_chain(role)
        for argv in outage_commands(role, addresses, how):
            self._run(argv)

    def heal(self, role: str) -> None:
        self._run(["iptables", "-w", "-F", chain(role)], check=False)


def apply_worker_fault(netns: str, data: Mapping[str, Any]) -> None:
    """One fault message from the master, carried out in this worker's namespace."""
    kind, role = str(data["fault"]), str(data.get("region") or "")
    outage = WorkerOutage(netns)
    if kind in OUTAGES:
        outage.cut(role, region_addresses(list(data["hosts"])), OUTAGES[kind])
    elif kind in HEALS:
        outage.heal(role)
    else:
        raise AwsFaultError(f"{kind} is not a worker-side fault")


# -- master side: the Route 53 record iotdr cloud created -------------------


@dataclass(frozen=True, slots=True)
class FailoverRecord:
    """The CNAME devices use: Route 53 failover record sets `primary` and
    `secondary` (cloud/templates/dns.yaml)."""

    hosted_zone_id: str
    record_name: str

    @classmethod
    def from_stack(cls, cloudformation: CloudFormationClient, stack: str) -> FailoverRecord:
        """Where `iotdr cloud deploy` put it: its DNS stack's parameters."""
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stacks[0]["Parameters"]}
        try:
            return cls(parameters["HostedZoneId"], parameters["RecordName"])
        except KeyError as exc:
            raise AwsFaultError(f"stack {stack} has no parameter {exc}") from None

    def _sets(self, route53: Route53Client) -> dict[str, Any]:
        name = self.record_name.rstrip(".")
        answer = route53.list_resource_record_sets(
            HostedZoneId=self.hosted_zone_id, StartRecordName=name + ".", StartRecordType="CNAME"
        )
        sets = {
            str(s.get("SetIdentifier", "")): s
            for s in answer["ResourceRecordSets"]
            if s["Name"].rstrip(".") == name and s["Type"] == "CNAME"
        }
        for role in ("primary", "secondary"):
            if role not in sets:
                zone = self.hosted_zone_id
                raise AwsFaultError(f"{self.record_name}: no CNAME record set '{role}' in {zone}")
        return sets

    def endpoints(self, route53: Route53Client) -> dict[str, str]:
        """Each role's endpoint as the record sets name it now."""
        return {
            role: str(s["ResourceRecords"][0]["Value"]) for role, s in self._sets(route53).items()
        }

    def point_at(self, route53: Route53Client, endpoint: str, ttl: int | None = None) -> str:
        """The `primary` record set now names `endpoint`; returns once INSYNC."""
        record = cast("ResourceRecordSetTypeDef", dict(self._sets(route53)["primary"]))
        record["ResourceRecords"] = [{"Value": endpoint}]
        if ttl is not None:
            record["TTL"] = ttl
        change = route53.change_resource_record_sets(
            HostedZoneId=self.hosted_zone_id,
            ChangeBatch={
                "Comment": f"iotdr simulate: cname -> {endpoint}",
                "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}],
            },
        )
        change_id = str(change["ChangeInfo"]["Id"])
        route53.get_waiter("resource_record_sets_changed").wait(
            Id=change_id, WaiterConfig={"Delay": 2, "MaxAttempts": 60}
        )
        return change_id


def cname_target(target: str, endpoints: Mapping[str, str]) -> str:
    """A scenario's CNAME target (a role or a host name) as a host name."""
    return endpoints.get(target, target)


# -- a run against real endpoints -------------------------------------------

REAL_AWS_FAULTS = ("kill", "restore", "blackhole", "heal", "cname")


def check_timeline(scenario: Scenario, *, has_dns_record: bool) -> None:
    """Faults that cannot be made on real AWS are refused before the run."""
    for index, fault in enumerate(scenario.timeline):
        if fault.fault not in REAL_AWS_FAULTS:
            raise ConfigError(
                scenario.source,
                f"timeline[{index}].fault",
                f"{fault.fault} needs the testbed; on real AWS: {', '.join(REAL_AWS_FAULTS)}",
            )
        if fault.fault == "cname" and not has_dns_record:
            raise ConfigError(
                scenario.source,
                f"timeline[{index}].fault",
                "cname on real AWS changes the Route 53 record: give --dns-stack",
            )


def endpoints_target(config: Path, certificates: Path) -> Target:
    """The fleet's target from an agent.yaml-style file (`endpoints`, `dns`)."""
    source = str(config)
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc}") from None
    if not isinstance(data, dict) or "endpoints" not in data:
        raise ConfigError(source, "endpoints", "is required (primary and secondary hosts)")
    base = {key: data[key] for key in ("endpoints", "dns") if key in data}
    settings = device_settings({}, base=base, source=source)
    if settings.primary is None or settings.secondary is None:
        raise ConfigError(source, "endpoints", "needs both primary and secondary")
    roles = {
        "primary": region_of(settings.primary.host) or settings.primary.host,
        "secondary": region_of(settings.secondary.host) or settings.secondary.host,
    }
    return Target(base_config=base, role_to_region=roles, certificates=certificates, testbed=None)


def endpoint_hosts(target: Target) -> dict[str, str]:
    settings = device_settings({}, base=target.base_config, source="endpoints")
    assert settings.primary is not None and settings.secondary is not None
    return {"primary": settings.primary.host, "secondary": settings.secondary.host}
