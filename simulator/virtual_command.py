"""`iotdr simulate run SCENARIO --virtual`: the scenario in virtual time.

No testbed: the devices' cores run against the world model, and the report
(report.json with `"mode": "virtual"`, devices.csv, plots, report.html) is
written by the same code as a real run's.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from iotdr.simulator.progress import Progress, Snapshot
from iotdr.simulator.report import write_report
from iotdr.simulator.scenario import Scenario
from iotdr.simulator.virtual_fleet import VirtualFleet
from iotdr.simulator.virtual_run import run_virtual

# Below this a second process costs more than it saves.
_DEVICES_PER_SHARD = 100_000


def default_shards(devices: int) -> int:
    return max(1, min(os.cpu_count() or 1, devices // _DEVICES_PER_SHARD))


def run_virtual_command(args: argparse.Namespace, scenario: Scenario) -> bool:
    """Runs and writes the report; True if the verdict is pass."""
    shards = args.shards or default_shards(scenario.fleet.devices)
    with Progress(quiet=args.quiet) as progress:
        last = [0.0]

        def show(fleet: VirtualFleet) -> None:
            if time.monotonic() - last[0] < 0.25:
                return
            last[0] = time.monotonic()
            t0 = fleet.t0 if fleet.t0 is not None else fleet.queue.now
            progress.show(
                Snapshot(
                    phase="virtual time" + (f" (shard 1 of {shards})" if shards > 1 else ""),
                    t_s=fleet.queue.now - t0,
                    devices=len(fleet.machines),
                    connected={r.name: r.connected for r in fleet.regions},
                    attempts_last_s=0,
                    acknowledged=0,
                    backlog=0,
                    faults=[f"{at:.1f}s {f.describe()}" for at, f in fleet.applied],
                )
            )

        facts = run_virtual(scenario, shards=shards, on_progress=None if args.quiet else show)
    report = write_report(Path(args.out), scenario, facts)
    print(report.summary())
    return report.passed
