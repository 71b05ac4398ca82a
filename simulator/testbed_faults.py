"""A scenario's faults, carried out on a testbed with its own fault verbs."""

from __future__ import annotations

from iotdr.simulator.scenario import Fault
from iotdr.testbed.testbed import Testbed
from iotdr.testbed.topology import resolve_role


def target_host(testbed: Testbed, target: str) -> str:
    """A CNAME target given as a role is that region's endpoint host name."""
    info = testbed.info
    if target in ("primary", "secondary"):
        return info.region(resolve_role(target)).host
    return target


def apply_fault(testbed: Testbed, fault: Fault) -> None:
    """Returns once the fault is in effect (the testbed's own guarantee)."""
    region = fault.region or ""
    match fault.fault:
        case "kill":
            testbed.kill_region(region)
        case "restore":
            testbed.restore_region(region)
        case "blackhole":
            testbed.blackhole(region)
        case "heal":
            testbed.heal(region)
        case "jitr":
            testbed.set_jitr(region, fault.on, fault.delay_s)
        case "cname":
            assert fault.target is not None
            testbed.set_cname(target_host(testbed, fault.target), fault.ttl)
        case "dns-fail":
            testbed.dns_fail(fault.mode)
        case "dns-heal":
            testbed.dns_heal()
        case _:
            raise ValueError(f"unknown fault {fault.fault}")
