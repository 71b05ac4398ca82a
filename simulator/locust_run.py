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

from iotdr.simulator.aws_faults import OWN_NAMESPACE
from iotdr.simulator.scenario import Scenario
from iotdr.testbed.testbed import Testbed

_WORKER_EXIT_S = 30.0
_EXPECT_WORKERS_MAX_WAIT_S = 120
_DEFAULT_MASTER_PORT = 5557  # Locust's; remote workers find it without being told


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
    testbed: Path | None,
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
    ]  # fmt: skip
    if testbed is not None:
        argv += ["--iotdr-testbed", str(testbed)]
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


def _run_master_and_workers(
    master: list[str], workers: list[list[str]], env: dict[str, str], quiet: bool
) -> int:
    process = subprocess.Popen(master, env=env, stdout=subprocess.DEVNULL if quiet else None)
    started = [subprocess.Popen(argv, env=env) for argv in workers]
    try:
        code = process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        for worker in started:
            try:
                worker.wait(_WORKER_EXIT_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return code


def run_on_endpoints(args: argparse.Namespace, scenario: Scenario, out: Path) -> int:
    """A master in real-endpoint mode, `--workers` local workers, and as many
    remote ones as `--expect-workers` adds. Region faults need workers in a
    namespace of their own (`iotdr simulate worker --netns`)."""
    certificates = scenario.fleet.certificates
    if certificates is None or not (certificates / "ca.pem").is_file():
        print(
            f"iotdr simulate: {scenario.source}: fleet.certificates: must name a directory "
            "with ca.pem and ID.pem/ID.key per device when --endpoints is given",
            file=sys.stderr,
        )
        return 2
    local = max(0, int(args.workers))
    expect = int(args.expect_workers or local)
    if expect < 1:
        print("iotdr simulate: --engine locust needs at least one worker", file=sys.stderr)
        return 2
    port = free_port() if args.master_bind_host == "127.0.0.1" else _DEFAULT_MASTER_PORT
    master = master_argv(
        Path(args.scenario).resolve(), out=out.resolve(), testbed=None, workers=expect,
        port=port, devices=args.devices, bind_host=args.master_bind_host,
    )  # fmt: skip
    master += ["--iotdr-endpoints", str(Path(args.endpoints).resolve())]
    master += ["--iotdr-certificates", str(certificates.resolve())]
    if args.dns_stack:
        master += ["--iotdr-dns-stack", args.dns_stack]
    if args.dns_region:
        master += ["--iotdr-dns-region", args.dns_region]
    workers = [worker_argv("127.0.0.1", port) for _ in range(local)]
    env = {**os.environ, "SSL_CERT_FILE": str(certificates / "ca.pem")}
    return _run_master_and_workers(master, workers, env, bool(args.quiet))


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

    master = wrap(
        master_argv(
            Path(args.scenario).resolve(),
            out=out,
            testbed=testbed.directory.resolve(),
            workers=workers,
            port=port,
            devices=args.devices,
        )
    )
    local = [wrap(worker_argv("127.0.0.1", port)) for _ in range(workers)]
    return _run_master_and_workers(master, local, env, bool(args.quiet))


def run_worker(args: argparse.Namespace) -> int:
    """`iotdr simulate worker --master HOST`: this machine joins a run."""
    argv = worker_argv(args.master, args.master_port, args.certificates, args.netns)
    if args.netns and args.netns != OWN_NAMESPACE:
        argv = ["ip", "netns", "exec", args.netns, *argv]
    return subprocess.run(argv, check=False, env=dict(os.environ)).returncode
