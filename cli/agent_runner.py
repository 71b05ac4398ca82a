"""Run the agent daemon inside a testbed's namespace and watch its status.

Used by the demo, the benchmarks and the integration tests: the agent runs
as the real `iotdr-agent run` process, resolving names through the
testbed's DNS exactly as in production; we talk to it over its control
socket (a Unix socket path, reachable from outside the namespace).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from iotdr.agent.control import query_status
from iotdr.testbed.testbed import Testbed

Status = dict[str, Any]


class AgentError(RuntimeError):
    """The agent did not reach the awaited state; carries its log tail."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class AgentRunner:
    def __init__(
        self,
        testbed: Testbed,
        name: str = "agent",
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.testbed = testbed
        directory = testbed.info.agent_config.parent
        base = yaml.safe_load(testbed.info.agent_config.read_text())
        self.config = deep_merge(base, {"control_socket": str(directory / f"{name}.sock")})
        self.config = deep_merge(self.config, overrides or {})
        self.config_path = directory / f"{name}.yaml"
        self.log_path = directory / f"{name}.log"
        self.write_config(self.config)
        self._env = dict(env or {})
        self.prefix: list[str] = []  # e.g. ["taskset", "-c", "0"] to pin the agent
        self.python = sys.executable  # another install's Python, e.g. the .deb's venv
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self, config: Mapping[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    @property
    def socket(self) -> str:
        return str(self.config["control_socket"])

    def start(self) -> AgentRunner:
        argv = [
            *self.prefix,
            self.python,
            "-m",
            "iotdr.agent",
            "run",
            "--config",
            str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.testbed.netns_argv(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self._env},
                start_new_session=True,
            )
        return self

    def __enter__(self) -> AgentRunner:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> Status | None:
        try:
            return query_status(self.socket, timeout=2.0)
        except (OSError, ValueError):
            return None

    def wait_for(
        self, predicate: Callable[[Status], bool], timeout: float, what: str = "condition"
    ) -> Status:
        """Poll the control socket until `predicate(status)` holds."""
        deadline = time.monotonic() + timeout
        last: Status | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AgentError(
                    f"agent exited ({self.process.returncode}) waiting for "
                    f"{what}\n{self.log_tail()}"
                )
            last = self.status()
            if last is not None and predicate(last):
                return last
            time.sleep(0.02)
        raise AgentError(
            f"timed out after {timeout} s waiting for {what}; last status {last}\n{self.log_tail()}"
        )

    def wait_connected(self, region: str, timeout: float = 30.0) -> Status:
        return self.wait_for(
            lambda s: bool(s["connected"]) and s["region"] == region,
            timeout,
            f"connected to {region}",
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
