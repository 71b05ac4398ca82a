"""`iotdr simulate run`: a scenario on real brokers, from start to report.

The outer half runs where the user typed the command: it validates the
scenario, brings up a testbed with the scenario's CONNECT quotas (or uses
the one given), mints a certificate per device, and runs the inner half
inside the testbed's network namespace (`ip netns exec`), where names
resolve through the testbed's DNS exactly as on a device. The inner half
runs the fleet and writes the report. Exit codes: 0 pass, 1 fail, 2 bad
input or a broken environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from iotdr.agent.core.errors import ConfigError
from iotdr.simulator.compiled_build import switch_to_compiled
from iotdr.simulator.locust_run import run_on_endpoints, run_on_testbed
from iotdr.simulator.scenario import Limits, Scenario, load_scenario
from iotdr.simulator.virtual_command import run_virtual_command
from iotdr.testbed.connect_limits import ConnectLimits
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.prerequisites import raise_open_files_limit
from iotdr.testbed.testbed import Testbed

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(Path(args.scenario))
    if args.devices is not None:
        scenario = scenario.with_devices(args.devices)
    return scenario


def connect_limits(limits: Limits | None) -> ConnectLimits | None:
    if limits is None:
        return None
    return ConnectLimits(
        account_connects_per_s=limits.account_connects_per_s,
        client_connect_interval_s=limits.client_connect_interval_s,
        refuse=limits.refuse,
    )


def certificates_dir(testbed: Testbed) -> Path:
    return testbed.directory / "devices"


def fleet_tls_environment(certificates: Path) -> dict[str, str]:
    """The environment for the process that runs the fleet.

    The CRT's TLS (s2n) parses the system's whole CA bundle for every new
    TLS context, about 7 ms each, before the device's own trust store
    replaces it; a fleet has a context per device certificate. Every device
    trusts only the fleet's CA anyway, so the system defaults point there
    (an empty directory for SSL_CERT_DIR): 0.4 ms per context instead.
    """
    empty = certificates / "no-system-certificates"
    empty.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "SSL_CERT_FILE": str(certificates / "ca.pem"),
        "SSL_CERT_DIR": str(empty),
    }


def _inside(testbed: Testbed) -> bool:
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino == testbed.state.netns_inode
    except OSError:
        return False


def _inner_argv(args: argparse.Namespace, out: Path) -> list[str]:
    argv = [
        sys.executable, "-m", "iotdr.simulator.inside", str(args.scenario),
        "--out", str(out.resolve()), "--crt-threads", str(args.crt_threads),
    ]  # fmt: skip
    if args.devices is not None:
        argv += ["--devices", str(args.devices)]
    if args.quiet:
        argv.append("-q")
    return argv


def run_against_endpoints(args: argparse.Namespace, scenario: Scenario, out: Path) -> int:
    """Real endpoints (e.g. two AWS IoT regions): no testbed, no faults of
    ours, the fleet's own certificates."""
    certificates = scenario.fleet.certificates
    if scenario.timeline:
        print(
            f"iotdr simulate: {scenario.source}: timeline: faults need a testbed "
            "(against real endpoints, cause the outage yourself and leave the timeline empty)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if certificates is None or not (certificates / "ca.pem").is_file():
        print(
            f"iotdr simulate: {scenario.source}: fleet.certificates: must name a directory "
            "with ca.pem and ID.pem/ID.key per device when --endpoints is given",
            file=sys.stderr,
        )
        return EXIT_ERROR
    argv = [*_inner_argv(args, out), "--endpoints", str(Path(args.endpoints).resolve())]
    env = fleet_tls_environment(certificates)
    return subprocess.run(argv, check=False, env=env).returncode


def run_outer(args: argparse.Namespace) -> int:
    try:
        scenario = scenario_from_args(args)
    except ConfigError as exc:
        print(f"iotdr simulate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if getattr(args, "compiled", False) and not getattr(args, "virtual", False):
        print("iotdr simulate: --compiled: only with --virtual", file=sys.stderr)
        return EXIT_ERROR
    if (error := switch_to_compiled(args, "iotdr simulate")) is not None:
        print(error, file=sys.stderr)
        return EXIT_ERROR
    if getattr(args, "virtual", False):  # no testbed: the world model answers
        return EXIT_PASS if run_virtual_command(args, scenario) else EXIT_FAIL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.endpoints is not None and getattr(args, "engine", "local") == "locust":
        return run_on_endpoints(args, scenario, out)
    if args.endpoints is not None:
        return run_against_endpoints(args, scenario, out)
    owned = args.testbed is None
    try:
        raise_open_files_limit()
        limits = connect_limits(scenario.limits)
        if owned:
            testbed = Testbed.up(out / "testbed", connect_limits=limits)
        else:
            testbed = Testbed.load(Path(args.testbed))
            for role in ("primary", "secondary"):
                if testbed.state.regions[role].faults.connect_limits != limits:
                    testbed.set_connect_limits(role, limits)
    except TestbedError as exc:
        print(f"iotdr simulate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        certificates = scenario.fleet.certificates or certificates_dir(testbed)
        if scenario.fleet.certificates is None:
            issue_client_certificates(testbed.layout, scenario.fleet.client_ids(), certificates)
        argv = [*_inner_argv(args, out), "--testbed", str(testbed.directory.resolve())]
        env = fleet_tls_environment(certificates)
        if getattr(args, "engine", "local") == "locust":
            return run_on_testbed(args, testbed, env, _inside(testbed))
        if _inside(testbed):
            return subprocess.run(argv, check=False, env=env).returncode
        return subprocess.run(testbed.netns_argv(argv), check=False, env=env).returncode
    finally:
        if owned:
            testbed.down()
