"""A fingerprint of a virtual run, to show a speed-up changed no result.

Runs `bench/virtual_million.py`'s scenario (or `--scenario FILE`) at
`--devices N` in virtual time and prints, besides the phases' wall times:
- `records`: a SHA-256 of every device's record (each Connect's time, each
  connection's attempt, region, reason, start, first PUBACK and end, the
  failures by kind, the message counts), in fleet order; a run hands the
  parent only the shards' summaries, so this one asks for the records too
  (`run_virtual(keep_records=True)`);
- `report`: a SHA-256 of report.json's content (without the `simulator`
  block, which holds wall times) and of every per-device row of
  devices.csv, computed as in any run from the shards' summaries.
Floats are hashed by `float.hex`, so a difference in the last bit shows.
Two builds that print the same digests computed the same run.

    .venv/bin/python bench/virtual_digest.py --devices 20000 --shards 1 [--compiled]

Under `valgrind --tool=callgrind` (instructions are repeatable on a shared
machine; seconds are not) give it a small fleet, say 3,000 devices.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, replace
from pathlib import Path

from virtual_million import SCENARIO

from iotdr.simulator.compiled_build import is_compiled, rerun_compiled
from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.device_summary import DeviceSummary
from iotdr.simulator.results import fleet_report
from iotdr.simulator.scenario import parse_scenario
from iotdr.simulator.virtual_run import run_virtual
from iotdr.simulator.virtual_world import TESTBED, without_testbed_limits


def _text(value: object) -> str:
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(k)}:{_text(v)}" for k, v in sorted(value.items())) + "}"
    return repr(value)


def records_digest(records: Iterable[DeviceRecord]) -> str:
    digest = hashlib.sha256()
    for r in records:
        connections = [
            (c.attempt, c.region, c.why, c.connected_at, c.first_ack_at, c.ended_at)
            for c in r.connections
        ]
        fields = (r.client_id, r.attempts, connections, r.failures)
        digest.update(_text([*fields, r.produced, r.acknowledged, r.resent]).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def report_digest(report: dict[str, object], rows: Sequence[DeviceSummary]) -> str:
    digest = hashlib.sha256()
    shown = {k: v for k, v in report.items() if k != "simulator"}
    digest.update(json.dumps(shown, sort_keys=True, default=repr).encode())
    for row in rows:
        digest.update(_text(list(astuple(row))).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=3000)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--scenario", type=Path, help="a scenario file (default: the million's)")
    parser.add_argument("--ttl", type=float, default=60.0, help="CNAME TTL (s)")
    parser.add_argument("--compiled", action="store_true")
    args = parser.parse_args()
    if args.compiled and not is_compiled():
        rerun_compiled([__file__, *sys.argv[1:]])
    text = args.scenario.read_text() if args.scenario else SCENARIO
    scenario = parse_scenario(text, str(args.scenario or "bench/virtual_million.py"))
    scenario = scenario.with_devices(args.devices)
    model = replace(without_testbed_limits(TESTBED), cname_ttl_s=args.ttl)
    started = time.perf_counter()
    facts = run_virtual(scenario, model=model, shards=args.shards, keep_records=True)
    simulated = time.perf_counter() - started
    report, rows = fleet_report(facts, scenario.criteria, scenario.name)
    reported = time.perf_counter() - started - simulated
    sim = facts.extra["simulator"]
    assert isinstance(sim, dict)
    print(f"compiled {sim['compiled']}, {args.devices:,} devices in {sim['shards']} shards")
    print(f"simulate {simulated:.2f} s {sim['phases_s']}; report {reported:.2f} s")
    print(f"core events {sim['core_events']:,}")
    print(f"records {records_digest(facts.records)}")
    print(f"report {report_digest(report, rows)}")


if __name__ == "__main__":
    main()
