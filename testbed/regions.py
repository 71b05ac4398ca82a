"""Starting and stopping the processes behind a region, and the local broker.

A region is one mosquitto, plus the JITR gate in front of it while JITR is
on. Which configuration they get follows from the region's faults.
"""

import sys

from iotdr.testbed import mosquitto, processes
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.state import RegionFaults, RegionState
from iotdr.testbed.topology import (
    GATE_UPSTREAM_PORT,
    LOCAL_ADDRESS,
    LOCAL_PORT,
    REGION_PORT,
    RegionSpec,
)


def _start_mosquitto(rt: Runtime, name: str, config: str, address: str, port: int) -> int:
    config_path = rt.layout.mosquitto_conf(name)
    config_path.write_text(config)
    log_path = rt.layout.log(name)
    argv = rt.exec_argv([rt.tools.mosquitto, "-c", str(config_path)])
    pid = processes.spawn_daemon(argv, log_path)
    processes.wait_until(
        lambda: processes.is_listening(pid, rt.netns_inode, address, port),
        pid=pid,
        what=f"mosquitto {name}",
        log_path=log_path,
    )
    return pid


def _start_gate(rt: Runtime, region: RegionSpec, faults: RegionFaults) -> int:
    layout = rt.layout
    cert_name = mosquitto.server_cert_name(region, faults)
    gate = [
        sys.executable, "-m", "iotdr.testbed.jitr_gate",
        "--listen", f"{region.address}:{REGION_PORT}",
        "--upstream", f"{region.address}:{GATE_UPSTREAM_PORT}",
        "--ca", str(layout.pem("ca")),
        "--cert", str(layout.pem(cert_name)),
        "--key", str(layout.key(cert_name)),
        "--delay", str(faults.jitr_delay_s),
        "--registry", str(layout.jitr_registry(region.name)),
    ]  # fmt: skip
    log_path = layout.log(f"{region.name}-jitr-gate")
    pid = processes.spawn_daemon(rt.exec_argv(gate), log_path)
    processes.wait_until(
        lambda: processes.is_listening(pid, rt.netns_inode, region.address, REGION_PORT),
        pid=pid,
        what=f"JITR gate {region.name}",
        log_path=log_path,
    )
    return pid


def start_region(rt: Runtime, region: RegionSpec, faults: RegionFaults) -> RegionState:
    """Starts the region as its faults say; returns its new state."""
    config = mosquitto.region_config(rt.layout, region, faults)
    behind_gate = faults.jitr_delay_s is not None
    port = GATE_UPSTREAM_PORT if behind_gate else REGION_PORT
    broker_pid = _start_mosquitto(rt, region.name, config, region.address, port)
    gate_pid = 0
    if behind_gate:
        try:
            gate_pid = _start_gate(rt, region, faults)
        except BaseException:
            processes.stop([broker_pid], rt.netns_inode, kill_at_once=True)
            raise
    return RegionState(faults=faults, broker_pid=broker_pid, gate_pid=gate_pid)


def stop_region(rt: Runtime, region: RegionState, *, crash: bool) -> RegionState:
    """Stops the region's processes (SIGKILL if `crash`); returns its new state."""
    processes.stop([region.gate_pid, region.broker_pid], rt.netns_inode, kill_at_once=crash)
    return RegionState(faults=region.faults)


def start_local(rt: Runtime) -> int:
    return _start_mosquitto(
        rt, "local", mosquitto.local_config(rt.layout), LOCAL_ADDRESS, LOCAL_PORT
    )


def restart_local(rt: Runtime, pid: int, *, crash: bool) -> int:
    """Stops the local broker (SIGTERM saves its store; SIGKILL does not) and
    starts it again; returns the new pid."""
    processes.stop([pid], rt.netns_inode, kill_at_once=crash)
    return start_local(rt)
