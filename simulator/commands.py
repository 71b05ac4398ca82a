"""`iotdr simulate ...`: thin CLI over the simulator.

iotdr simulate run SCENARIO --out DIR [--devices N] [--testbed DIR] [-q]
iotdr simulate run SCENARIO --virtual --out DIR [--devices N] [--shards K] [-q]
iotdr simulate advise SCENARIO --devices N --quota Q [--sample S] [--plot PNG]
iotdr simulate run SCENARIO --engine locust [--workers N] ...
iotdr simulate worker --master HOST [--master-port P] [--certificates DIR] [--netns NS]
iotdr simulate certs N --dir D [--testbed DIR] [--client-id PATTERN]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iotdr.simulator.advise import register as register_advise
from iotdr.simulator.compiled_build import add_compiled_option
from iotdr.simulator.locust_run import run_worker
from iotdr.simulator.run import run_outer
from iotdr.simulator.scenario import DEFAULT_CLIENT_ID
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.testbed import Testbed

DEFAULT_TESTBED = Path("run/testbed")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = subparsers.add_parser(
        "simulate", help="a fleet of simulated devices through a failover scenario"
    )
    commands = simulate.add_subparsers(dest="simulate_command", required=True)

    run = commands.add_parser("run", help="run a scenario on real brokers and write a report")
    run.add_argument("scenario", help="scenario file (see config/scenarios/)")
    run.add_argument("--out", required=True, help="directory for report.json, CSV, plots, HTML")
    run.add_argument("--devices", type=int, help="fleet size (overrides fleet.devices)")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--testbed", help="use this running testbed (default: bring up one in OUT/testbed)"
    )
    where.add_argument(
        "--endpoints",
        help="real endpoints instead of a testbed: an agent.yaml whose endpoints/dns the "
        "devices use (needs fleet.certificates; no timeline faults)",
    )
    run.add_argument(
        "--crt-threads", type=int, default=1, help="CRT event loop threads (default: 1)"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    run.add_argument(
        "--virtual", action="store_true", help="in virtual time, without a testbed (any size)"
    )
    run.add_argument("--shards", type=int, help="--virtual: processes (default: by fleet size)")
    add_compiled_option(run)
    run.add_argument(
        "--engine", choices=("local", "locust"), default="local",
        help="local: one process (CRT); locust: a Locust master and --workers worker processes",
    )  # fmt: skip
    run.add_argument("--workers", type=int, default=2, help="local Locust workers (default: 2)")
    run.add_argument(
        "--expect-workers", type=int,
        help="locust: workers to wait for, local and remote (default: --workers)",
    )  # fmt: skip
    run.add_argument(
        "--master-bind-host", default="127.0.0.1",
        help="locust: where remote workers reach the master (default: 127.0.0.1)",
    )  # fmt: skip
    run.add_argument("--dns-stack", help="locust, real endpoints: the iotdr cloud DNS stack")
    run.add_argument("--dns-region", help="the DNS stack's region")
    run.set_defaults(func=run_outer)

    worker = commands.add_parser("worker", help="join a distributed (Locust) run as a worker")
    worker.add_argument("--master", required=True, help="the Locust master's host")
    worker.add_argument("--master-port", type=int, default=5557)
    worker.add_argument("--certificates", help="device certificates here (ID.pem, ID.key, ca.pem)")
    worker.add_argument(
        "--netns",
        help="run the devices in this network namespace, where region outages are made "
        "(self: this process's own, e.g. a pod's)",
    )
    worker.set_defaults(func=_worker)

    certs = commands.add_parser("certs", help="mint device certificates from a testbed's CA")
    certs.add_argument("count", type=int)
    certs.add_argument("--dir", required=True, type=Path, help="where ID.pem/ID.key go")
    certs.add_argument("--testbed", type=Path, default=DEFAULT_TESTBED)
    certs.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="pattern with {index}")
    certs.set_defaults(func=_certs)
    register_advise(commands)


def _worker(args: argparse.Namespace) -> int:
    return run_worker(args)


def _certs(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("iotdr simulate certs: count must be at least 1", file=sys.stderr)
        return 2
    try:
        testbed = Testbed.load(args.testbed)
        ids = [args.client_id.format(index=i) for i in range(args.count)]
        issue_client_certificates(testbed.layout, ids, args.dir)
    except (TestbedError, KeyError, IndexError, ValueError) as exc:
        print(f"iotdr simulate certs: {exc}", file=sys.stderr)
        return 2
    print(f"{args.count} device certificates in {args.dir} (CA: {args.dir / 'ca.pem'})")
    return 0
