"""`iotdr simulate run --engine locust` and `iotdr simulate worker`.

The run starts a headless Locust master and N local worker processes with
our locustfile (inside the testbed's network namespace, like the local
engine, so names resolve through the testbed's DNS), waits for the master,
and makes sure no worker outlives it. More workers can join from other
machines with `iotdr simulate worker --master HOST` (or the plain
`locust --worker -f <locustfile> --master-host HOST`); the master waits for
`--expect-workers` of them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from iotdr.testbed.testbed import Testbed

_WORKER_EXIT_S = 30.0
_EXPECT_WORKERS_MAX_WAIT_S = 120


def locustfile() -> str:
    """The path of our locustfile, without importing it (importing Locust
    monkey-patches this process for gevent)."""
    spec = importlib.util.find_spec("iotdr.simulator.locustfile")
    assert spec is not None and spec.origin is not None
    return spec.origin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def master_argv(
    scenario: Path,
    *,
    out: Path,
    testbed: Path,
    workers: int,
    port: int,
    devices: int | None,
    bind_host: str = "127.0.0.1",
) -> list[str]:
    argv = [
        sys.executable, "-m", "locust", "-f", locustfile(),
        "--master", "--headless", "--only-summary", "--loglevel", "WARNING",
        "--master-bind-host", bind_host, "--master-bind-port", str(port),
        "--expect-workers", str(workers),
        "--expect-workers-max-wait", str(_EXPECT_WORKERS_MAX_WAIT_S),
        "-u", str(workers), "-r", str(workers),
        "--csv", str(out / "locust"),
        "--iotdr-scenario", str(scenario), "--iotdr-out", str(out),
        "--iotdr-testbed", str(testbed),
    ]  # fmt: skip
    if devices is not None:
        argv += ["--iotdr-devices", str(devices)]
    return argv


def worker_argv(
    master: str, port: int, certificates: str | None = None, netns: str | None = None
) -> list[str]:
    argv = [
        sys.executable, "-m", "locust", "-f", locustfile(), "--worker",
        "--master-host", master, "--master-port", str(port), "--loglevel", "WARNING",
    ]  # fmt: skip
    if certificates:
        argv += ["--iotdr-certificates", certificates]
    if netns:
        argv += ["--iotdr-netns", netns]
    return argv


def run_on_testbed(
    args: argparse.Namespace,
    testbed: Testbed,
    env: dict[str, str],
    inside: bool,
) -> int:
    """Master and `args.workers` local workers against `testbed`; the master's exit code."""
    workers = max(1, int(args.workers))
    port = free_port()
    out = Path(args.out).resolve()

    def wrap(argv: Sequence[str]) -> list[str]:
        return list(argv) if inside else testbed.netns_argv(argv)

    master = subprocess.Popen(
        wrap(
            master_argv(
                Path(args.scenario).resolve(),
                out=out,
                testbed=testbed.directory.resolve(),
                workers=workers,
                port=port,
                devices=args.devices,
            )
        ),
        env=env,
        stdout=subprocess.DEVNULL if args.quiet else None,
    )  # fmt: skip
    started = [
        subprocess.Popen(wrap(worker_argv("127.0.0.1", port)), env=env) for _ in range(workers)
    ]
    try:
        code = master.wait()
    finally:
        if master.poll() is None:
            master.terminate()
            master.wait(30)
        for worker in started:
            try:
                worker.wait(_WORKER_EXIT_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return code


def run_worker(args: argparse.Namespace) -> int:
    """`iotdr simulate worker --master HOST`: this machine joins a run."""
    argv = worker_argv(args.master, args.master_port, args.certificates, args.netns)
    if args.netns:
        argv = ["ip", "netns", "exec", args.netns, *argv]
    return subprocess.run(argv, check=False, env=dict(os.environ)).returncode
