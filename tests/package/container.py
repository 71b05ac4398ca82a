"""A minimal Debian booted with systemd as PID 1 (systemd-nspawn), inside a
testbed's network namespace, and driven from outside with nsenter.

The root (`scripts/systemd-root`, debootstrap) is made once and cached under
build/; each boot runs on a throwaway overlay (`--volatile=overlay`), so
nothing a test does to it survives. Every boot is under `timeout`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from iotdr.testbed.testbed import Testbed

BOOT_TIMEOUT_S = 600  # the whole life of a container, whatever happens


class ContainerError(AssertionError):
    pass


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except FileNotFoundError:
            continue
        found.extend(int(child) for child in text.split())
    return found


def _find_init(pid: int) -> int | None:
    """The container's PID 1 as seen from the host: a `systemd` below `pid`."""
    todo = [pid]
    while todo:
        current = todo.pop()
        for child in _children(current):
            try:
                comm = Path(f"/proc/{child}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if comm == "systemd":
                return child
            todo.append(child)
    return None


class Container:
    def __init__(self, root: Path, testbed: Testbed, binds: dict[Path, str], log: Path) -> None:
        argv = [
            "timeout",
            str(BOOT_TIMEOUT_S),
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            # Not `ip netns exec`: it remounts /sys, hiding the cgroup file
            # systems systemd needs. The namespace's resolver is the testbed's.
            f"--network-namespace-path=/run/netns/{testbed.netns}",
            "--resolv-conf=off",
            f"--bind-ro={testbed.resolv_conf}:/etc/resolv.conf",
            f"--directory={root}",
            *(f"--bind-ro={host}:{inside}" for host, inside in binds.items()),
        ]
        self.log = log
        self.testbed_dir = testbed.directory
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.init_pid = self._wait_for_init()
        self._wait_booted()

    def _wait_for_init(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pid = _find_init(self.process.pid)
            if pid is not None:
                return pid
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise ContainerError(f"the container did not boot; see {self.log}")

    def _wait_booted(self) -> None:
        # nsenter may come before systemd has its namespaces and bus ready.
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline and self.process.poll() is None:
            done = self.run(["systemctl", "is-system-running", "--wait"], check=False)
            state = done.stdout.strip() or done.stderr.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise ContainerError(f"boot ended {state!r}; see {self.log}")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs `argv` inside the container (its namespaces and root)."""
        done = subprocess.run(
            ["nsenter", f"--target={self.init_pid}", "--all", "--root", "--wd", "--", *argv],
            input=input_bytes.decode() if input_bytes is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        if check and done.returncode != 0:
            raise ContainerError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-ec", script], check=check)

    def write(self, path: str, data: bytes, mode: int, group: str = "root") -> None:
        self.run(["sh", "-ec", f"cat > {path}"], input_bytes=data)
        self.run(["chgrp", group, path])
        self.run(["chmod", f"{mode:o}", path])

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in properties)])
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def journal(self, unit: str, *options: str) -> str:
        return self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, *options]).stdout

    def poweroff(self) -> None:
        """Shuts the container down; kills it if it does not go in time."""
        if self.process.poll() is not None:
            return
        self.run(["systemctl", "poweroff", "--no-block"], check=False)
        try:
            self.process.wait(60)
            return
        except subprocess.TimeoutExpired:
            pass
        # `timeout` hands SIGTERM on to systemd-nspawn, which shuts down.
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the testbed's own session
            self.process.wait(10)
