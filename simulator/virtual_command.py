"""`iotdr simulate run SCENARIO --virtual`: the scenario in virtual time.

No testbed: the devices' cores run against the world model, and the report
(report.json with `"mode": "virtual"`, devices.csv, plots, report.html) is
written by the same code as a real run's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from iotdr.simulator.progress import Progress, Snapshot
from iotdr.simulator.report import write_report
from iotdr.simulator.scenario import Scenario
from iotdr.simulator.virtual_fleet import VirtualFleet
from iotdr.simulator.virtual_run import run_virtual
from iotdr.simulator.virtual_shards import ShardsProgress, default_shards


def run_virtual_command(args: argparse.Namespace, scenario: Scenario) -> bool:
    """Runs and writes the report; True if the verdict is pass."""
    quota = scenario.limits.account_connects_per_s if scenario.limits else None
    shards = args.shards or default_shards(scenario.fleet.devices, quota)
    with Progress(quiet=args.quiet) as progress:
        last = [0.0]

        def show(fleet: VirtualFleet) -> None:
            if time.monotonic() - last[0] < 0.25:
                return
            last[0] = time.monotonic()
            t0 = fleet.t0 if fleet.t0 is not None else fleet.queue.now
            progress.show(
                Snapshot(
                    phase="virtual time",
                    t_s=fleet.queue.now - t0,
                    devices=len(fleet.machines),
                    connected={r.name: r.connected for r in fleet.regions},
                    attempts_last_s=None,
                    acknowledged=None,
                    backlog=None,
                    faults=[f"{at:.1f}s {f.describe()}" for at, f in fleet.applied],
                )
            )

        def show_shards(where: ShardsProgress) -> None:
            if where.ramped < where.shards:
                phase = f"virtual time: {where.ramped} of {where.shards} shards ramped up"
            else:
                phase = f"virtual time: {where.done} of {where.shards} shards done"
            progress.show(
                Snapshot(
                    phase=phase,
                    t_s=where.t_s,
                    devices=scenario.fleet.devices,
                    connected=where.connected,
                    attempts_last_s=None,
                    acknowledged=None,
                    backlog=None,
                )
            )

        facts = run_virtual(
            scenario,
            shards=shards,
            on_progress=None if args.quiet else show,
            on_shards=None if args.quiet else show_shards,
        )
    report = write_report(Path(args.out), scenario, facts)
    print(report.summary())
    return report.passed
