"""`iotdr simulate advise`: the connect spread a fleet should ship with.

For a fleet of N devices on an account allowing Q CONNECT/s, it runs the
scenario's first fault in virtual time for a range of
`connection.connect_spread_s` values (and, at the best spread, a few
`backoff.max_s` values) and prints RTO p99, time to 99 % recovered and the
CONNECTs the regions throttled for each; the advice is the setting with
the lowest RTO p99 among those whose throttled CONNECTs stay under 1 % of
the fleet (a storm the quota absorbs), or the lowest p99 overall if none
does.

A fleet larger than `--sample` devices is simulated as a sample of that
size (grown until the scaled quota is at least 5 CONNECT/s) with the quota
scaled down in proportion (N/Q, the seconds the quota needs to let the
fleet back, is kept): when N/Q is long next to the agent's
own timescales (backoff, JITR retries, the one-second CONNECT spacing),
the fleet behaves as a fluid and the sample's percentiles are the fleet's.
The README gives the check of that scaling. Against AWS IoT, the world
model has no handshake throughput limit (only the testbed's machine has).

The trials are independent runs: `--jobs` of them (default one per CPU)
run at once, each a forked process with one shard, so the sample keeps
its whole scaled quota in one token bucket (sharding a trial would split
it, virtual_shards).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from iotdr.agent.core.errors import ConfigError
from iotdr.simulator.compiled_build import add_compiled_option, switch_to_compiled
from iotdr.simulator.results import fleet_report
from iotdr.simulator.scenario import Limits, Scenario, load_scenario
from iotdr.simulator.virtual_run import run_virtual
from iotdr.simulator.virtual_world import TESTBED, without_testbed_limits

STORM_FRACTION = 0.01  # throttled CONNECTs above 1 % of the fleet: a storm
# The quota's bucket holds one second's worth: a sample's scaled quota
# below a few CONNECT/s would never bank a whole token (connect_limits.c
# refuses everything under 1/s), so the sample grows to keep at least this.
MIN_SCALED_QUOTA = 5.0
SPREAD_FACTORS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@dataclass(frozen=True, slots=True)
class Trial:
    spread_s: float
    backoff_max_s: float
    rto_p99_s: float | None
    back_99_s: float | None
    throttled: int
    recovered: float


def fleet_for_advice(scenario: Scenario, devices: int, quota: float, sample: int) -> Scenario:
    """The scenario's first fault for a sample of the fleet, the quota scaled
    with it, long enough for the fleet to come back."""
    first = scenario.first_fault()
    if first is None:
        raise ConfigError(scenario.source, "timeline", "advice needs at least one fault")
    simulated = min(devices, max(sample, math.ceil(MIN_SCALED_QUOTA * devices / quota)))
    scaled_quota = quota * simulated / devices
    limits = scenario.limits or Limits()
    drain_s = devices / quota
    scenario = replace(
        scenario.with_devices(simulated),
        timeline=(first,),
        duration_s=first.at_s + 2 * drain_s + 60.0,
        drain_s=0.0,
        limits=replace(limits, account_connects_per_s=scaled_quota),
    )
    ramp = replace(scenario.fleet, connect_rate_per_s=0.5 * scaled_quota, settle_s=1.0)
    return replace(scenario, fleet=ramp)


def trial(scenario: Scenario, spread_s: float, backoff_max_s: float, devices: int) -> Trial:
    sc = scenario.with_agent(
        {"connection": {"connect_spread_s": spread_s}, "backoff": {"max_s": backoff_max_s}}
    )
    report, _ = fleet_report(
        run_virtual(sc, model=without_testbed_limits(TESTBED)), sc.criteria, sc.name
    )
    rto = report["rto_s"]
    back = report["time_to_recovered_s"]
    throttled = report["throttled_connects"]
    recovered = report["recovered"]
    assert isinstance(rto, dict) and isinstance(back, dict) and isinstance(recovered, float)
    scale = devices / sc.fleet.devices
    return Trial(
        spread_s=spread_s,
        backoff_max_s=backoff_max_s,
        rto_p99_s=rto["p99"],
        back_99_s=back["99%"],
        throttled=round((throttled if isinstance(throttled, int) else 0) * scale),
        recovered=recovered,
    )


def best(trials: list[Trial], devices: int) -> Trial:
    def p99(t: Trial) -> float:
        return math.inf if t.rto_p99_s is None else t.rto_p99_s

    calm = [t for t in trials if t.throttled <= STORM_FRACTION * devices]
    return min(calm or trials, key=p99)


def trials_at(
    sc: Scenario, settings: list[tuple[float, float]], devices: int, jobs: int
) -> list[Trial]:
    """A trial for each (spread, backoff.max_s), in that order, `jobs` at once."""
    if jobs <= 1 or len(settings) <= 1:
        return [trial(sc, spread, backoff, devices) for spread, backoff in settings]
    # fork: the children inherit the modules already loaded (the compiled
    # build among them) and the scenario, rather than importing them again.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(jobs, len(settings)), mp_context=context) as pool:
        runs = [pool.submit(trial, sc, spread, backoff, devices) for spread, backoff in settings]
        return [run.result() for run in runs]


def advise(
    scenario: Scenario, devices: int, quota: float, sample: int, jobs: int = 1
) -> list[Trial]:
    sc = fleet_for_advice(scenario, devices, quota, sample)
    drain_s = devices / quota
    spreads = sorted({round(max(0.5, f * drain_s), 2) for f in SPREAD_FACTORS})
    backoff_default = 60.0
    trials = trials_at(sc, [(s, backoff_default) for s in spreads], devices, jobs)
    chosen = best(trials, devices)
    backoffs = [(chosen.spread_s, b) for b in (15.0, 30.0, 120.0)]
    return trials + trials_at(sc, backoffs, devices, jobs)


def plot(trials: list[Trial], path: Path, devices: int, quota: float) -> None:
    spread = [t for t in trials if t.backoff_max_s == 60.0]
    figure, left = plt.subplots(figsize=(7, 4))
    xs = [t.spread_s for t in spread]
    left.plot(xs, [t.rto_p99_s or math.nan for t in spread], "o-", color="tab:blue")
    left.set_xlabel("connection.connect_spread_s (s)")
    left.set_ylabel("RTO p99 (s)", color="tab:blue")
    right = left.twinx()
    right.bar(xs, [t.throttled for t in spread], width=max(xs) / 40, alpha=0.4, color="tab:red")
    right.set_ylabel("throttled CONNECTs", color="tab:red")
    left.set_title(f"{devices:,} devices, {quota:g} CONNECT/s")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _shown(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def run_advise(args: argparse.Namespace) -> int:
    if (error := switch_to_compiled(args, "iotdr simulate advise")) is not None:
        print(error, file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(Path(args.scenario))
        if args.devices < 1 or args.quota <= 0 or args.sample < 10 or args.jobs < 1:
            raise ConfigError(
                "advise", "--devices/--quota/--sample/--jobs", "must be positive (sample >= 10)"
            )
        trials = advise(scenario, args.devices, args.quota, args.sample, args.jobs)
    except ConfigError as exc:
        print(f"iotdr simulate advise: {exc}", file=sys.stderr)
        return 2
    chosen = best(trials, args.devices)
    simulated = fleet_for_advice(scenario, args.devices, args.quota, args.sample).fleet.devices
    print(
        f"{args.devices:,} devices at {args.quota:g} CONNECT/s (simulated: {simulated:,} devices "
        f"at {args.quota * simulated / args.devices:g}/s); the quota needs "
        f"{args.devices / args.quota:.0f} s"
    )
    print("spread_s  backoff.max_s  RTO p99 (s)  99% back (s)  throttled  recovered")
    for t in trials:
        mark = "  <- advice" if t is chosen else ""
        print(
            f"{t.spread_s:8.1f}  {t.backoff_max_s:13.0f}  {_shown(t.rto_p99_s):>11}  "
            f"{_shown(t.back_99_s):>12}  {t.throttled:9d}  {t.recovered:9.1%}{mark}"
        )
    print(
        f"advice: connection.connect_spread_s: {chosen.spread_s:g}, "
        f"backoff.max_s: {chosen.backoff_max_s:g}"
    )
    if args.plot:
        plot(trials, Path(args.plot), args.devices, args.quota)
        print(f"plot: {args.plot}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "advise", help="the connect spread that minimises RTO p99 without a throttled storm"
    )
    parser.add_argument("scenario", help="scenario file; its first fault is used")
    parser.add_argument("--devices", type=int, required=True, help="fleet size")
    parser.add_argument("--quota", type=float, required=True, help="account CONNECT/s")
    parser.add_argument(
        "--sample", type=int, default=1000, help="devices simulated (default 1000; see README)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="trials run at once, each in its own process (default: one per CPU)",
    )
    parser.add_argument("--plot", help="PNG of RTO p99 and throttled CONNECTs against the spread")
    add_compiled_option(parser)
    parser.set_defaults(func=run_advise)
