"""Starting, watching and stopping the testbed's daemons.

Daemons are started detached (their own session, output appended to a log
file) and are deliberately *not* our children: a short-lived shell starts
them in the background and exits, so they outlive `iotdr testbed up`, and no
Python process ends up owning `Popen` objects of daemons another process
will stop. Processes are then addressed through pidfds, which makes
signalling immune to pid reuse and lets us wait for an exit without polling.
"""

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from iotdr.testbed.errors import TestbedError

# `$!` is the pid of the background job; setsid and `ip netns exec` both exec
# in place, so it ends up being the daemon's own pid.
_LAUNCH_SCRIPT = 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!'

POLL_INTERVAL_S = 0.02


def run(argv: Sequence[str], what: str, *, timeout_s: float = 30.0) -> str:
    """Runs a short command; raises TestbedError naming `what` if it fails."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestbedError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {done.returncode}"
        raise TestbedError(f"{what}: {reason}")
    return done.stdout


def spawn_daemon(argv: Sequence[str], log_path: Path) -> int:
    """Starts `argv` detached with output appended to `log_path`; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    output = run(["sh", "-c", _LAUNCH_SCRIPT, "iotdr-launch", str(log_path), *argv], "spawn")
    return int(output.strip())


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def is_running(pid: int) -> bool:
    """True if `pid` exists and has not exited (a zombie counts as exited)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The state follows the command name, which is in parentheses.
            state = stat.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def netns_inode_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def pids_in_netns(netns_inode: int) -> list[int]:
    """Every process whose network namespace is the given one (as `ip netns pids`).

    Works from the inode, so it still finds processes after the namespace's
    name is gone. Our own process is never included.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        if netns_inode_of(int(entry)) == netns_inode:
            found.append(int(entry))
    return found


def stop(
    pids: Sequence[int], netns_inode: int, *, kill_at_once: bool, grace_s: float = 5.0
) -> None:
    """Stops processes that run in the given namespace and waits until they exited.

    `kill_at_once` sends SIGKILL (a region crash); otherwise SIGTERM first and
    SIGKILL only after `grace_s`. Pids not (or no longer) in the namespace are
    skipped, so a recycled pid is never signalled.
    """
    pidfds: list[int] = []
    try:
        for pid in pids:
            pidfd = _pidfd(pid) if pid > 0 else None
            if pidfd is None:
                continue
            if netns_inode_of(pid) != netns_inode:
                os.close(pidfd)
                continue
            pidfds.append(pidfd)
        first = signal.SIGKILL if kill_at_once else signal.SIGTERM
        _signal_all(pidfds, first)
        remaining = _wait_exit(pidfds, grace_s)
        if remaining:
            _signal_all(remaining, signal.SIGKILL)
            if _wait_exit(remaining, grace_s):
                raise TestbedError("processes did not exit after SIGKILL")
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def _signal_all(pidfds: Sequence[int], sig: signal.Signals) -> None:
    for pidfd in pidfds:
        with contextlib.suppress(ProcessLookupError):  # already gone
            signal.pidfd_send_signal(pidfd, sig)


def _wait_exit(pidfds: Sequence[int], timeout_s: float) -> list[int]:
    """Waits until every pidfd reports an exit; returns those still running."""
    poller = select.poll()
    pending = set(pidfds)
    for pidfd in pidfds:
        poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while pending:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        for pidfd, _event in poller.poll(remaining_ms):
            pending.discard(pidfd)
            poller.unregister(pidfd)
    return [pidfd for pidfd in pidfds if pidfd in pending]


def wait_entered(
    process: "subprocess.Popen[bytes]", netns_inode: int, timeout_s: float = 10.0
) -> None:
    """Waits until `ip netns exec` has moved `process` into the namespace (or it ended)."""
    deadline = time.monotonic() + timeout_s
    while netns_inode_of(process.pid) != netns_inode and process.poll() is None:
        if time.monotonic() > deadline:
            raise TestbedError(f"process {process.pid} did not enter the network namespace")
        time.sleep(POLL_INTERVAL_S)


def is_listening(pid: int, netns_inode: int, address: str, port: int) -> bool:
    """True if `pid` runs in the namespace, which has a socket listening on address:port.

    Read from /proc instead of connecting, so it also works while the address
    is blackholed and leaves no spurious connections in broker logs. The
    namespace check matters: until `ip netns exec` has switched, /proc/PID/net
    shows the host's sockets.
    """
    if netns_inode_of(pid) != netns_inode:
        return False
    wanted = f"{_proc_net_address(address)}:{port:04X}"
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as table:
            next(table)  # header
            for line in table:
                fields = line.split()
                if fields[1] == wanted and fields[3] == "0A":  # 0A is TCP_LISTEN
                    return True
    except OSError:
        return False
    return False


def _proc_net_address(address: str) -> str:
    # /proc/net/tcp prints IPv4 addresses as one host-order (little-endian) word.
    return "".join(f"{int(octet):02X}" for octet in reversed(address.split(".")))


def wait_until(
    ready: Callable[[], bool],
    *,
    pid: int,
    what: str,
    log_path: Path,
    timeout_s: float = 15.0,
) -> None:
    """Polls `ready` until it holds; fails fast, with the log's tail, if `pid` dies."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not is_running(pid):
            raise TestbedError(f"{what} exited during start-up{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TestbedError(f"{what} not ready after {timeout_s:.0f} s{_log_tail(log_path)}")
        time.sleep(POLL_INTERVAL_S)


def _log_tail(log_path: Path, lines: int = 5) -> str:
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f" (see {log_path}):\n  " + "\n  ".join(tail) if tail else f" (see {log_path})"
