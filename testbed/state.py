"""state.json: the testbed's own bookkeeping, kept out of the contract.

Holds what faults are active (so they survive across CLI invocations and can
be undone exactly), the pids behind each region, Knot's pid and the TSIG key.
"""

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from iotdr.testbed.connect_limits import ConnectLimits
from iotdr.testbed.dns_records import DnsRecords, TsigKey
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.jsonfile import read_json, write_json
from iotdr.testbed.topology import ROLES, Role


class DnsFailMode(enum.Enum):
    TIMEOUT = "timeout"  # DNS packets vanish
    SERVFAIL = "servfail"  # the zone is expired in Knot
    NXDOMAIN = "nxdomain"  # the CNAME and TXT records are deleted
    REFUSED = "refused"  # Knot is stopped: port unreachable


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionFaults:
    killed: bool = False
    blackholed: bool = False
    jitr_delay_s: float | None = None  # None: JITR off
    tls_bad: bool = False
    auth_reject: bool = False
    # Not a fault, but like one it decides the broker's configuration and
    # must survive kill/restore: the region's emulated AWS IoT CONNECT quotas.
    connect_limits: ConnectLimits | None = None

    def describe(self) -> list[str]:
        active = []
        if self.killed:
            active.append("killed")
        if self.blackholed:
            active.append("blackholed")
        if self.jitr_delay_s is not None:
            active.append(f"jitr(delay={self.jitr_delay_s:g}s)")
        if self.tls_bad:
            active.append("tls-bad")
        if self.auth_reject:
            active.append("auth-reject")
        if self.connect_limits is not None:
            active.append(self.connect_limits.describe())
        return active


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionState:
    faults: RegionFaults = field(default_factory=RegionFaults)
    broker_pid: int = 0
    gate_pid: int = 0  # the JITR gate in front of the broker, 0 when none

    @property
    def serving_pid(self) -> int:
        """The process that owns the region's public address and port."""
        return self.gate_pid or self.broker_pid


@dataclass(frozen=True, slots=True, kw_only=True)
class TestbedState:
    __test__ = False  # not a test class, though pytest collects names starting with "Test"

    netns_inode: int
    knot_pid: int
    tsig: TsigKey
    records: DnsRecords
    dns_fault: DnsFailMode | None
    regions: dict[Role, RegionState]

    def with_region(self, role: Role, region: RegionState) -> "TestbedState":
        return replace(self, regions={**self.regions, role: region})

    def to_json(self) -> dict[str, Any]:
        return {
            "netns_inode": self.netns_inode,
            "knot_pid": self.knot_pid,
            "tsig": {
                "name": self.tsig.name,
                "algorithm": self.tsig.algorithm,
                "secret": self.tsig.secret,
            },
            "records": {
                "cname_target": self.records.cname_target,
                "cname_ttl": self.records.cname_ttl,
                "txt": self.records.txt,
                "txt_ttl": self.records.txt_ttl,
            },
            "dns_fault": self.dns_fault.value if self.dns_fault else None,
            "regions": {role: _region_json(region) for role, region in self.regions.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TestbedState":
        try:
            fault = data["dns_fault"]
            return cls(
                netns_inode=int(data["netns_inode"]),
                knot_pid=int(data["knot_pid"]),
                tsig=TsigKey(**data["tsig"]),
                records=DnsRecords(**data["records"]),
                dns_fault=DnsFailMode(fault) if fault is not None else None,
                regions={role: _region_from_json(data["regions"][role]) for role in ROLES},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TestbedError(f"state.json is malformed: {exc!r}") from exc


def _region_json(region: RegionState) -> dict[str, Any]:
    faults = region.faults
    return {
        "broker_pid": region.broker_pid,
        "gate_pid": region.gate_pid,
        "faults": {
            "killed": faults.killed,
            "blackholed": faults.blackholed,
            "jitr_delay_s": faults.jitr_delay_s,
            "tls_bad": faults.tls_bad,
            "auth_reject": faults.auth_reject,
            "connect_limits": faults.connect_limits.to_json() if faults.connect_limits else None,
        },
    }


def _region_from_json(data: dict[str, Any]) -> RegionState:
    faults = dict(data["faults"])
    limits = faults.pop("connect_limits", None)
    return RegionState(
        faults=RegionFaults(
            **faults, connect_limits=ConnectLimits.from_json(limits) if limits else None
        ),
        broker_pid=int(data["broker_pid"]),
        gate_pid=int(data["gate_pid"]),
    )


def load_state(path: Path) -> TestbedState:
    return TestbedState.from_json(read_json(path))


def save_state(path: Path, state: TestbedState) -> None:
    write_json(path, state.to_json())
