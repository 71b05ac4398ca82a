"""`Testbed`: bring a two-region testbed up, inject faults, tear it down.

Every method works from the files in the testbed directory (testbed.json,
state.json) under a file lock, so a testbed brought up by one process (the
CLI, a fixture) can be driven and torn down by another. Each fault method
returns once the fault is in effect.

    with Testbed.up(Path("run/tb")) as tb:
        tb.kill_region("primary")
        ...
"""

import fcntl
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from iotdr.testbed import dns_faults, firewall, netns, processes, regions
from iotdr.testbed.connect_limits import ConnectLimits, SecondCounts, read_stats
from iotdr.testbed.contract import TestbedInfo, load_info, save_info
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.layout import Layout
from iotdr.testbed.prerequisites import find_tools, raise_open_files_limit
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.startup import start_everything
from iotdr.testbed.state import (
    DnsFailMode,
    RegionFaults,
    RegionState,
    TestbedState,
    load_state,
    save_state,
)
from iotdr.testbed.status import TestbedStatus, collect_status
from iotdr.testbed.topology import ADDRCONFIG_ADDRESS, DNS_ADDRESS, REGIONS, Role, resolve_role

NETNS_PREFIX = "iotdr-tb-"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Testbed(AbstractContextManager["Testbed"]):
    __test__ = False  # not a test class, though pytest collects names starting with "Test"

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- life cycle ----------------------------------------------------------

    @classmethod
    def up(
        cls, directory: Path, *, cname_ttl: int = 5, connect_limits: ConnectLimits | None = None
    ) -> "Testbed":
        """Starts a testbed with its files in `directory`; see DESIGN.md.

        `connect_limits` gives both regions AWS IoT's CONNECT quotas.
        """
        tools = find_tools()
        raise_open_files_limit()
        layout = Layout.at(directory)
        layout.directory.mkdir(parents=True, exist_ok=True)
        with _file_lock(layout.lock):
            _refuse_if_running(layout)
            name = _free_netns_name()
            netns.create(tools.ip, name, nameserver=DNS_ADDRESS, extra_address=ADDRCONFIG_ADDRESS)
            testbed = cls(Runtime(tools, name, netns.inode(name), layout))
            try:
                start_everything(testbed._rt, cname_ttl=cname_ttl, connect_limits=connect_limits)
            except BaseException:
                testbed._teardown()
                raise
        return testbed

    @classmethod
    def load(cls, directory: Path) -> "Testbed":
        """The testbed described by directory/testbed.json (up or already down)."""
        layout = Layout.at(directory)
        info = load_info(layout.testbed_json)
        state = load_state(layout.state_json)
        return cls(Runtime(find_tools(), info.netns, state.netns_inode, layout))

    def down(self) -> None:
        """Stops everything running in the namespace and deletes it (idempotent)."""
        with _file_lock(self._rt.layout.lock):
            self._teardown()
            state = load_state(self._rt.layout.state_json)
            # Faults (iptables rules, configurations) went with the namespace.
            stopped = {role: RegionState() for role in state.regions}
            self._commit(replace(state, knot_pid=0, dns_fault=None, regions=stopped), local_pid=0)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    def _teardown(self) -> None:
        pids = processes.pids_in_netns(self._rt.netns_inode)
        processes.stop(pids, self._rt.netns_inode, kill_at_once=False)
        netns.delete(self._rt.tools.ip, self._rt.netns)

    # -- bookkeeping -----------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[TestbedState]:
        """Serialises changes (across processes too) and yields the current state."""
        with _file_lock(self._rt.layout.lock):
            if not netns.exists(self._rt.netns):
                raise TestbedError(
                    f"testbed in {self._rt.layout.directory} is down "
                    f"(network namespace {self._rt.netns} does not exist)"
                )
            yield load_state(self._rt.layout.state_json)

    def _commit(self, state: TestbedState, *, local_pid: int | None = None) -> None:
        """Saves state.json and mirrors the serving pids into testbed.json."""
        save_state(self._rt.layout.state_json, state)
        info = self.info
        for role, region in state.regions.items():
            info = info.with_region_pid(role, region.serving_pid)
        if local_pid is not None:
            info = replace(info, local=replace(info.local, pid=local_pid))
        save_info(self._rt.layout.testbed_json, info)

    # -- views -------------------------------------------------------------------

    @property
    def info(self) -> TestbedInfo:
        """testbed.json as it is now (pids change when faults restart processes)."""
        return load_info(self._rt.layout.testbed_json)

    @property
    def state(self) -> TestbedState:
        return load_state(self._rt.layout.state_json)

    @property
    def directory(self) -> Path:
        return self._rt.layout.directory

    @property
    def layout(self) -> Layout:
        """Where the testbed's files are (PKI, logs, configurations)."""
        return self._rt.layout

    @property
    def netns(self) -> str:
        return self._rt.netns

    @property
    def resolv_conf(self) -> Path:
        """The namespace's resolv.conf (dnspython: Resolver(filename=...))."""
        return netns.resolv_conf(self._rt.netns)

    def status(self) -> TestbedStatus:
        return collect_status(self._rt, self.info, self.state)

    # -- running things inside -----------------------------------------------

    def netns_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed with `ip netns exec NS`."""
        return self._rt.exec_argv(argv)

    def spawn(self, argv: Sequence[str], log_path: Path) -> "subprocess.Popen[bytes]":
        """Starts `argv` inside the namespace, output appended to `log_path`.

        Returns once the process is inside the namespace (so a `down` right
        after is sure to stop it). The process is the caller's to wait for.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                self.netns_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.wait_entered(process, self._rt.netns_inode)
        return process

    def inside(self) -> AbstractContextManager[None]:
        """Moves the current thread into the namespace (see netns.inside)."""
        return netns.inside(self._rt.netns)

    # -- region faults -------------------------------------------------------

    def restart_local(self, *, crash: bool = False) -> None:
        """Restarts the gateway's local broker (a crash skips its final save)."""
        with self._locked() as state:
            pid = regions.restart_local(self._rt, self.info.local.pid, crash=crash)
            self._commit(state, local_pid=pid)

    def kill_region(self, role: str) -> None:
        """SIGKILLs the region (broker and JITR gate): connections are refused."""
        which = resolve_role(role)
        with self._locked() as state:
            region = state.regions[which]
            stopped = regions.stop_region(self._rt, region, crash=True)
            faults = replace(region.faults, killed=True)
            self._commit(state.with_region(which, replace(stopped, faults=faults)))

    def restore_region(self, role: str) -> None:
        """Starts a killed (or crashed) region again on the same address."""
        which = resolve_role(role)
        with self._locked() as state:
            region = state.regions[which]
            faults = replace(region.faults, killed=False)
            if faults == region.faults and _region_running(region):
                return
            self._restart(state, which, faults)

    def blackhole(self, role: str) -> None:
        """Drops every packet to and from the region's address."""
        which = resolve_role(role)
        spec = REGIONS[which]
        with self._locked() as state:
            firewall.add(self._rt, firewall.blackhole_rules(spec.name, spec.address))
            self._commit(_with_faults(state, which, lambda f: replace(f, blackholed=True)))

    def heal(self, role: str) -> None:
        """Removes exactly the rules `blackhole` added."""
        which = resolve_role(role)
        spec = REGIONS[which]
        with self._locked() as state:
            firewall.remove(self._rt, firewall.blackhole_rules(spec.name, spec.address))
            self._commit(_with_faults(state, which, lambda f: replace(f, blackholed=False)))

    def set_jitr(self, role: str, on: bool, delay_s: float = 3.0) -> None:
        """Puts the JITR gate in front of the region (on) or takes it away (off).

        Turning JITR on starts with no registered certificates.
        """
        which = resolve_role(role)
        if delay_s < 0:
            raise TestbedError("JITR delay must not be negative")
        with self._locked() as state:
            region = state.regions[which]
            if on and region.faults.jitr_delay_s is None:
                self._rt.layout.jitr_registry(REGIONS[which].name).unlink(missing_ok=True)
            faults = replace(region.faults, jitr_delay_s=delay_s if on else None)
            self._reconfigure(state, which, faults)

    def set_tls_bad(self, role: str, bad: bool) -> None:
        """Restarts the region presenting a certificate from the rogue CA (or not)."""
        which = resolve_role(role)
        with self._locked() as state:
            faults = replace(state.regions[which].faults, tls_bad=bad)
            self._reconfigure(state, which, faults)

    def set_auth_reject(self, role: str, reject: bool) -> None:
        """Restarts the region answering every CONNECT "not authorized" (or not)."""
        which = resolve_role(role)
        with self._locked() as state:
            faults = replace(state.regions[which].faults, auth_reject=reject)
            self._reconfigure(state, which, faults)

    def set_connect_limits(self, role: str, limits: ConnectLimits | None) -> None:
        """Restarts the region with these CONNECT quotas (None: unlimited)."""
        which = resolve_role(role)
        with self._locked() as state:
            faults = replace(state.regions[which].faults, connect_limits=limits)
            self._reconfigure(state, which, faults)

    def connect_counts(self, role: str) -> list[SecondCounts]:
        """Per-second CONNECTs accepted and refused by a region with limits."""
        return read_stats(self._rt.layout.connect_stats(REGIONS[resolve_role(role)].name))

    def _reconfigure(self, state: TestbedState, role: Role, faults: RegionFaults) -> None:
        region = state.regions[role]
        if faults == region.faults:
            return
        if faults.killed:  # takes effect when the region is restored
            self._commit(state.with_region(role, replace(region, faults=faults)))
            return
        self._restart(state, role, faults)

    def _restart(self, state: TestbedState, role: Role, faults: RegionFaults) -> None:
        stopped = regions.stop_region(self._rt, state.regions[role], crash=False)
        # Committed before starting, so state.json never names dead processes.
        state = state.with_region(role, replace(stopped, faults=faults))
        self._commit(state)
        self._commit(state.with_region(role, regions.start_region(self._rt, REGIONS[role], faults)))

    # -- DNS faults ----------------------------------------------------------

    def set_cname(self, host: str, ttl: int | None = None) -> None:
        """Points the CNAME at `host` (dynamic update), optionally with a new TTL."""
        target = host.rstrip(".")
        if not target:
            raise TestbedError("CNAME target must not be empty")
        with self._locked() as state:
            records = replace(
                state.records,
                cname_target=target,
                cname_ttl=state.records.cname_ttl if ttl is None else ttl,
            )
            self._commit(dns_faults.change_records(self._rt, state, records))

    def set_txt(self, text: str) -> None:
        """Sets the TXT record's text (any string, garbage included)."""
        with self._locked() as state:
            records = replace(state.records, txt=text)
            self._commit(dns_faults.change_records(self._rt, state, records))

    def dns_fail(self, mode: DnsFailMode | str) -> None:
        """Breaks DNS: timeout, servfail, nxdomain or refused (see dns_faults)."""
        try:
            which = DnsFailMode(mode)
        except ValueError as exc:
            known = "|".join(m.value for m in DnsFailMode)
            raise TestbedError(f"unknown DNS failure {mode!r} (expected {known})") from exc
        with self._locked() as state:
            self._commit(dns_faults.fail(self._rt, state, which))

    def dns_heal(self) -> None:
        """Ends the DNS fault; the zone serves exactly its records again."""
        with self._locked() as state:
            self._commit(dns_faults.heal(self._rt, state))


def _with_faults(
    state: TestbedState, role: Role, change: Callable[[RegionFaults], RegionFaults]
) -> TestbedState:
    region = state.regions[role]
    return state.with_region(role, replace(region, faults=change(region.faults)))


def _region_running(region: RegionState) -> bool:
    behind_gate = region.faults.jitr_delay_s is not None
    pids = [region.broker_pid, region.gate_pid] if behind_gate else [region.broker_pid]
    return all(processes.is_running(pid) for pid in pids)


def _free_netns_name() -> str:
    for _ in range(100):
        name = f"{NETNS_PREFIX}{secrets.token_hex(3)}"
        if not netns.exists(name):
            return name
    raise TestbedError("no free network namespace name")


def _refuse_if_running(layout: Layout) -> None:
    if not layout.testbed_json.exists():
        return
    try:
        running = netns.exists(load_info(layout.testbed_json).netns)
    except TestbedError:
        return  # unreadable leftovers: overwritten
    if running:
        raise TestbedError(
            f"a testbed is already up in {layout.directory}; "
            f"run `iotdr testbed down --dir {layout.directory}` first"
        )
