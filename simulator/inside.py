"""The inner half of `iotdr simulate run` (see run.py), started inside the
testbed's namespace: python -m iotdr.simulator.inside SCENARIO --out DIR --testbed DIR"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from iotdr.simulator.progress import Progress
from iotdr.simulator.real_run import RealRun, endpoints_target, testbed_target
from iotdr.simulator.report import write_report
from iotdr.simulator.run import EXIT_FAIL, EXIT_PASS, certificates_dir, scenario_from_args
from iotdr.testbed.prerequisites import raise_open_files_limit
from iotdr.testbed.testbed import Testbed


def run_inner(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    out = Path(args.out)
    if args.endpoints is not None:
        assert scenario.fleet.certificates is not None
        target = endpoints_target(
            Path(args.endpoints), scenario.fleet.certificates, crt_threads=args.crt_threads
        )
    else:
        testbed = Testbed.load(Path(args.testbed))
        certificates = scenario.fleet.certificates or certificates_dir(testbed)
        target = testbed_target(testbed, certificates, crt_threads=args.crt_threads)
    raise_open_files_limit()
    with Progress(quiet=args.quiet) as progress:
        run = RealRun(scenario, target, progress)
        observe = scenario.observe and target.testbed is not None
        observed = out / "observed.json" if observe else None
        facts = asyncio.run(run.run(observed))
    report = write_report(out, scenario, facts)
    print(report.summary())
    return EXIT_PASS if report.passed else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotdr.simulator.inside")
    parser.add_argument("scenario")
    parser.add_argument("--out", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--testbed")
    where.add_argument("--endpoints")
    parser.add_argument("--devices", type=int)
    parser.add_argument("--crt-threads", type=int, default=1)
    parser.add_argument("-q", "--quiet", action="store_true")
    return run_inner(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
