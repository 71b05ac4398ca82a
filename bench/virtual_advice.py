"""The README's advice table: the connect spread for 10^4, 10^5 and 10^6
devices at 500 and 3,000 CONNECT/s, and the check that a scaled sample
stands for the whole fleet.

    nice .venv/bin/python bench/virtual_advice.py --sample 500

For each fleet size N and quota Q it runs `iotdr simulate advise`'s sweep
(the hard-down example's first fault; see simulator/advise.py) and prints
the advised spread with its RTO p99 and throttled CONNECTs next to the
agent's default spread (0.5 s); every trial goes to stderr. Then it runs 10^4 devices at 500/s whole
and as a sample, at the advised spread, to show the scaling holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iotdr.simulator.advise import advise, best, fleet_for_advice, trial
from iotdr.simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quotas", default="500,3000")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    scenario = load_scenario(ROOT / "config" / "scenarios" / "region-hard-down.yaml")
    print(
        "| devices | CONNECT/s | fleet / quota (s) | advised connect_spread_s | RTO p99 (s) "
        "| throttled | RTO p99 at 0.5 s spread (s) | throttled at 0.5 s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for devices in (int(n) for n in args.sizes.split(",")):
        for quota in (float(q) for q in args.quotas.split(",")):
            trials = advise(scenario, devices, quota, args.sample)
            chosen = best(trials, devices)
            for t in trials:  # every trial on record, beside the table
                print(
                    f"  {devices:,} at {quota:g}/s: spread {t.spread_s:g} s, backoff.max_s "
                    f"{t.backoff_max_s:g}: RTO p99 {_s(t.rto_p99_s)}, 99 % back {_s(t.back_99_s)}, "
                    f"throttled {t.throttled:,}, recovered {t.recovered:.1%}",
                    file=sys.stderr,
                    flush=True,
                )
            default = next(t for t in trials if t.spread_s == 0.5 and t.backoff_max_s == 60.0)
            print(
                f"| {devices:,} | {quota:,.0f} | {devices / quota:,.0f} | {chosen.spread_s:g} "
                f"| {chosen.rto_p99_s or float('nan'):.1f} | {chosen.throttled:,} "
                f"| {default.rto_p99_s or float('nan'):.1f} | {default.throttled:,} |",
                flush=True,
            )
    if args.skip_scaling:
        return
    print("\nscaling check: 10,000 devices at 500 CONNECT/s, spread 20 s")
    for sample in (10_000, 1_000, args.sample):
        sc = fleet_for_advice(scenario, 10_000, 500.0, sample)
        t = trial(sc, 20.0, 60.0, 10_000)
        print(
            f"  simulated {sample:>6,} devices at {500 * sample / 10_000:g}/s: RTO p99 "
            f"{t.rto_p99_s or float('nan'):.1f} s, 99 % back {t.back_99_s or float('nan'):.1f} s, "
            f"throttled (scaled) {t.throttled:,}",
            flush=True,
        )


if __name__ == "__main__":
    main()
