"""Measures the virtual world model's parameters on a real testbed.

Runs a scenario on real brokers (the real runner, in the testbed's
namespace), keeps every device's raw record, and prints what the world
model needs (simulator/WORLD_MODEL.md says how each is used):
- handshake: Connect -> CONNACK of each device's first connection during
  the ramp-up (light load);
- handshake service: how fast the failover's connections complete when the
  whole fleet reconnects at once (the testbed machine's TLS throughput);
- kill notice: region killed -> each connection reported lost;
- blackhole notice: region blackholed -> each connection given up;
- first ack: CONNACK -> first PUBACK after a failover;
- refusal: Connect -> a quota refusal noticed (the next attempt comes the
  first JITR retry delay after it), and how much later a CONNACK comes
  (`connack_s`); needs a scenario whose quota refuses, e.g.
  bench/validation/blackhole.yaml.

    flock /tmp/iotdr-measure.lock .venv/bin/python bench/world_latencies.py \\
        config/scenarios/region-hard-down.yaml --devices 1000 --dir /tmp/wl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from iotdr.simulator.progress import Progress
from iotdr.simulator.real_run import RealRun, testbed_target
from iotdr.simulator.results import refusal_and_connack_gaps
from iotdr.simulator.run import certificates_dir, connect_limits, fleet_tls_environment
from iotdr.simulator.scenario import load_scenario
from iotdr.simulator.virtual_world import TESTBED
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.prerequisites import raise_open_files_limit
from iotdr.testbed.testbed import Testbed


def inner(args: argparse.Namespace) -> None:
    scenario = load_scenario(Path(args.scenario)).with_devices(args.devices)
    testbed = Testbed.load(Path(args.dir) / "testbed")
    raise_open_files_limit()
    target = testbed_target(testbed, certificates_dir(testbed))
    with Progress(quiet=True) as progress:
        facts = asyncio.run(RealRun(scenario, target, progress).run(None))
    dump = {
        "faults": [[e.since, e.fault.fault if e.fault else None] for e in facts.faults],
        "ack_timeout_s": RealRun(scenario, target, progress).settings().connection.ack_timeout_s,
        "jitr_retry_s": RealRun(scenario, target, progress).settings().jitr.retry_delays_s[0],
        "interval_s": scenario.fleet.publish_interval_s,
        "records": [
            {
                "attempts": r.attempts,
                "connections": [
                    [c.region, c.why, c.connected_at, c.first_ack_at, c.ended_at]
                    for c in r.connections
                ],
            }
            for r in facts.records
        ],
    }
    (Path(args.dir) / "records.json").write_text(json.dumps(dump))


def quantiles(values: list[float], points: int = 11) -> list[float]:
    ordered = sorted(values)
    if not ordered:
        return []
    return [round(ordered[round(i * (len(ordered) - 1) / (points - 1))], 4) for i in range(points)]


def analyse(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    faults = [(at, kind) for at, kind in data["faults"] if kind]
    records = data["records"]
    out: dict[str, Any] = {}
    ramp = [
        r["connections"][0][2] - r["attempts"][0]
        for r in records
        if r["connections"] and len(r["attempts"]) >= 1 and r["connections"][0][2] < 0
    ]
    out["handshake_s (ramp, Connect->CONNACK)"] = quantiles(ramp)
    retry = data.get("jitr_retry_s", 1.0)
    refusals, connacks = [], []
    for r in records:
        gaps = refusal_and_connack_gaps(r["attempts"], [c[2] for c in r["connections"]], retry)
        refusals += gaps[0]
        connacks += gaps[1]
    if refusals and connacks:
        service = TESTBED.handshake_service_s
        out["refusals"] = len(refusals)
        out["handshake_s (Connect->refusal noticed - handshake_service_s)"] = quantiles(
            [v - service for v in refusals]
        )
        out["connack_s (median Connect->CONNACK - median Connect->refusal)"] = round(
            statistics.median(connacks) - statistics.median(refusals), 4
        )
    if faults:
        at, kind = faults[0]
        ended = [
            c[4] - at
            for r in records
            for c in r["connections"]
            if c[2] < at and c[4] is not None and at <= c[4]
        ]
        out[f"{kind} notice_s (fault -> connection given up)"] = quantiles(ended)
        if kind == "blackhole":
            extra = [e - data["ack_timeout_s"] - data["interval_s"] / 2 for e in ended]
            out["ack_timeout_extra_s (notice - ack_timeout - interval/2)"] = quantiles(extra)
        back = sorted(
            c[2] for r in records for c in r["connections"] if c[2] >= at and c[1] != "failback"
        )
        if len(back) > 20:
            lo, hi = back[len(back) // 20], back[len(back) * 19 // 20]
            out["failover connections/s (p5..p95)"] = round((len(back) * 0.9) / (hi - lo), 1)
            out["handshake_service_s"] = round((hi - lo) / (len(back) * 0.9), 5)
        first_ack = [
            c[3] - c[2]
            for r in records
            for c in r["connections"]
            if c[2] >= at and c[3] is not None
        ]
        out["first_ack_s (CONNACK -> first PUBACK)"] = quantiles(first_ack)
        out["median first_ack_s"] = round(statistics.median(first_ack), 4) if first_ack else None
    return out


def outer(args: argparse.Namespace) -> None:
    scenario = load_scenario(Path(args.scenario)).with_devices(args.devices)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    testbed = Testbed.up(directory / "testbed", connect_limits=connect_limits(scenario.limits))
    try:
        issue_client_certificates(
            testbed.layout, scenario.fleet.client_ids(), certificates_dir(testbed)
        )
        argv = [sys.executable, __file__, args.scenario, "--devices", str(args.devices)]
        argv += ["--dir", str(directory.resolve()), "--inner"]
        env = fleet_tls_environment(certificates_dir(testbed))
        subprocess.run(testbed.netns_argv(argv), check=True, env=env)
    finally:
        testbed.down()
    print(json.dumps(analyse(directory / "records.json"), indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--inner", action="store_true")
    parser.add_argument("--analyse", action="store_true", help="only analyse DIR/records.json")
    args = parser.parse_args()
    if args.inner:
        inner(args)
    elif args.analyse:
        print(json.dumps(analyse(Path(args.dir) / "records.json"), indent=1))
    else:
        outer(args)


if __name__ == "__main__":
    main()
