"""The README's advice table: the connect spread for 10^4, 10^5 and 10^6
devices at 500 and 3,000 CONNECT/s, and the check that a scaled sample
stands for the whole fleet.

    nice .venv/bin/python bench/virtual_advice.py --compiled --sample 100000

For each fleet size N and quota Q it runs `iotdr simulate advise`'s sweep
(the hard-down example's first fault; see simulator/advise.py), `--jobs`
trials at once, and prints the advised spread with its RTO p99 and
throttled CONNECTs next to the agent's default spread (0.5 s), and the
minutes the row took; every trial goes to stderr. Fleets up to `--sample`
devices are simulated whole. Then it runs 10^5 devices at 3,000/s whole
and as samples of 10^4 and 10^3, at fleet / quota, to show what a sample
keeps (RTO) and what it overstates (throttled CONNECTs: its token bucket
is smaller, so chance bunching overflows it more often).

    .venv/bin/python bench/virtual_advice.py --compiled --whole 1000000 3000 333.33,416.67

runs just those spreads on the whole fleet, to check a sampled row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from iotdr.simulator.advise import Trial, advise, best, fleet_for_advice, trial, trials_at
from iotdr.simulator.compiled_build import is_compiled, rerun_compiled
from iotdr.simulator.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _trial_line(devices: int, quota: float, t: Trial) -> str:
    return (
        f"  {devices:,} at {quota:g}/s: spread {t.spread_s:g} s, backoff.max_s "
        f"{t.backoff_max_s:g}: RTO p99 {_s(t.rto_p99_s)}, 99 % back {_s(t.back_99_s)}, "
        f"throttled {t.throttled:,}, recovered {t.recovered:.1%}"
    )


def whole(scenario: Scenario, devices: int, quota: float, spreads: str, jobs: int) -> None:
    """Chosen spreads for a whole fleet, not a sample: how a sampled row
    stands up (two million-device trials at 3,000/s, one per core, took
    29.5 minutes on the 2-core machine)."""
    sc = fleet_for_advice(scenario, devices, quota, devices)
    settings = [(float(spread), 60.0) for spread in spreads.split(",")]
    started = time.perf_counter()
    for t in trials_at(sc, settings, devices, jobs):
        print(_trial_line(devices, quota, t), flush=True)
    print(f"  ({(time.perf_counter() - started) / 60:.1f} minutes, whole fleet)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quotas", default="500,3000")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--compiled", action="store_true", help="on the mypyc build")
    parser.add_argument(
        "--whole",
        nargs=3,
        metavar=("DEVICES", "QUOTA", "SPREADS"),
        help="only these spreads (comma-separated) on the whole fleet, no sweep",
    )
    args = parser.parse_args()
    if args.compiled and not is_compiled():
        rerun_compiled([__file__, *sys.argv[1:]])
    print(f"compiled: {is_compiled()}, {args.jobs} trials at once", flush=True)
    scenario = load_scenario(ROOT / "config" / "scenarios" / "region-hard-down.yaml")
    if args.whole:
        devices, quota, spreads = args.whole
        whole(scenario, int(devices), float(quota), spreads, args.jobs)
        return
    print(
        "| devices | CONNECT/s | fleet / quota (s) | advised connect_spread_s | RTO p99 (s) "
        "| throttled | RTO p99 at 0.5 s spread (s) | throttled at 0.5 s | simulated | minutes |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for devices in (int(n) for n in args.sizes.split(",")):
        for quota in (float(q) for q in args.quotas.split(",")):
            started = time.perf_counter()
            trials = advise(scenario, devices, quota, args.sample, args.jobs)
            minutes = (time.perf_counter() - started) / 60
            simulated = fleet_for_advice(scenario, devices, quota, args.sample).fleet.devices
            chosen = best(trials, devices)
            for t in trials:  # every trial on record, beside the table
                print(_trial_line(devices, quota, t), file=sys.stderr, flush=True)
            default = next(t for t in trials if t.spread_s == 0.5 and t.backoff_max_s == 60.0)
            print(
                f"| {devices:,} | {quota:,.0f} | {devices / quota:,.4g} | {chosen.spread_s:g} "
                f"| {chosen.rto_p99_s or float('nan'):.1f} | {chosen.throttled:,} "
                f"| {default.rto_p99_s or float('nan'):.1f} | {default.throttled:,} "
                f"| {simulated:,} | {minutes:.1f} |",
                flush=True,
            )
    if args.skip_scaling:
        return
    print("\nscaling check: 100,000 devices at 3,000 CONNECT/s, spread 33.33 s")
    for sample in (100_000, 10_000, 1_000):
        sc = fleet_for_advice(scenario, 100_000, 3000.0, sample)
        t = trial(sc, 33.33, 60.0, 100_000)
        print(
            f"  simulated {sample:>7,} devices at {3000 * sample / 100_000:g}/s: RTO p99 "
            f"{t.rto_p99_s or float('nan'):.1f} s, 99 % back {t.back_99_s or float('nan'):.1f} s, "
            f"throttled (scaled) {t.throttled:,}",
            flush=True,
        )


if __name__ == "__main__":
    main()
