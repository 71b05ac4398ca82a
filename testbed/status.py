"""What a testbed runs, which faults are active, and whether anything died."""

from dataclasses import dataclass

from iotdr.testbed import netns, processes
from iotdr.testbed.contract import TestbedInfo
from iotdr.testbed.dns_records import DnsRecords
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.state import DnsFailMode, TestbedState
from iotdr.testbed.topology import REGIONS, Role


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    name: str
    pid: int
    expected: bool  # False while a fault (kill, dns-fail refused) stopped it
    running: bool

    @property
    def healthy(self) -> bool:
        return self.running or not self.expected


@dataclass(frozen=True, slots=True, kw_only=True)
class TestbedStatus:
    __test__ = False  # not a test class, though pytest collects names starting with "Test"

    directory: str
    netns: str
    netns_exists: bool
    processes: list[ProcessStatus]
    region_faults: dict[Role, list[str]]
    dns_fault: DnsFailMode | None
    records: DnsRecords

    @property
    def healthy(self) -> bool:
        """The namespace exists and everything that should run does."""
        return self.netns_exists and all(p.healthy for p in self.processes)

    def render(self) -> str:
        if not self.netns_exists:
            return f"testbed {self.directory}: down (network namespace {self.netns} is gone)"
        lines = [f"testbed {self.directory}", f"  namespace {self.netns}: up"]
        for process in self.processes:
            if process.running:
                state = "running"
            else:
                state = "stopped (fault)" if not process.expected else "DEAD"
            lines.append(f"  {process.name:<24} pid {process.pid:<8} {state}")
        for role, faults in self.region_faults.items():
            region = REGIONS[role]
            lines.append(f"  {region.name} ({role}) faults: {', '.join(faults) or 'none'}")
        dns_fault = self.dns_fault.value if self.dns_fault else "none"
        lines.append(f"  dns fault: {dns_fault}")
        lines.append(f"  cname -> {self.records.cname_target} (ttl {self.records.cname_ttl})")
        lines.append(f"  txt: {self.records.txt!r}")
        return "\n".join(lines)


def collect_status(rt: Runtime, info: TestbedInfo, state: TestbedState) -> TestbedStatus:
    exists = netns.exists(rt.netns)

    def process(name: str, pid: int, expected: bool) -> ProcessStatus:
        running = exists and processes.is_running(pid)
        return ProcessStatus(name=name, pid=pid, expected=expected, running=running)

    found = [
        process("knotd", state.knot_pid, state.dns_fault is not DnsFailMode.REFUSED),
        process("mosquitto local", info.local.pid, True),
    ]
    for role, region in state.regions.items():
        name = REGIONS[role].name
        alive = not region.faults.killed
        found.append(process(f"mosquitto {name}", region.broker_pid, alive))
        if region.faults.jitr_delay_s is not None:
            found.append(process(f"jitr-gate {name}", region.gate_pid, alive))
    return TestbedStatus(
        directory=str(rt.layout.directory),
        netns=rt.netns,
        netns_exists=exists,
        processes=found,
        region_faults={role: region.faults.describe() for role, region in state.regions.items()},
        dns_fault=state.dns_fault,
        records=state.records,
    )
