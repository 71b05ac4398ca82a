"""A million devices through a hard-down failover and failback, in virtual time.

Every device is the agent's unchanged core. The scenario: the fleet ramps
up at 100,000 CONNECT/s on an account whose quota was raised to that (AWS
IoT quotas are adjustable), with `connection.connect_spread_s` at fleet /
quota = 10 s; the primary is killed at t=5 s and restored at t=30 s; the
run ends at t=60 s. The CNAME TTL is 60 s (the testbed's is 5 s). Prints
wall time (building the fleet, simulating, records), core events and
events per second, peak RSS, and the fleet's figures.

    flock /tmp/iotdr-measure.lock .venv/bin/python bench/virtual_million.py --devices 1000000

`--compiled` runs the core and the engine compiled with mypyc
(simulator/compiled_build.py; the same source, the same results).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from dataclasses import replace

from iotdr.simulator.compiled_build import is_compiled, rerun_compiled
from iotdr.simulator.results import fleet_report
from iotdr.simulator.scenario import parse_scenario
from iotdr.simulator.virtual_run import run_virtual
from iotdr.simulator.virtual_shards import default_shards
from iotdr.simulator.virtual_world import TESTBED, without_testbed_limits

SCENARIO = """
name: million-hard-down
duration_s: 60
drain_s: 0
fleet: {devices: 1000000, connect_rate_per_s: 100000, settle_s: 1}
timeline:
  - {at_s: 5, fault: kill, region: primary}
  - {at_s: 30, fault: restore, region: primary}
agent:
  connection: {connect_spread_s: 10}
limits: {account_connects_per_s: 100000}
criteria: {recovered_min: 0, lost_max: 1000000000000}
"""


def tree_pss_mb(root: int) -> float:
    """The memory `root` and all its descendants hold now: their
    proportional set sizes, so pages the shards share with the parent
    after fork are counted once, not once per process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    ppid = int(file.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total_kb, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as file:
                for line in file:
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


class TreeMemorySampler(threading.Thread):
    """Samples this process tree's total memory (PSS): what all processes
    hold at once, not the sum of each one's own peak."""

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.every_s, self.peak_mb = every_s, 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, tree_pss_mb(os.getpid()))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument(
        "--shards", type=int, help="processes (default: virtual_shards.default_shards)"
    )
    parser.add_argument("--ttl", type=float, default=60.0, help="CNAME TTL (s)")
    parser.add_argument(
        "--compiled", action="store_true", help="the core and engine compiled with mypyc"
    )
    args = parser.parse_args()
    if args.compiled and not is_compiled():
        rerun_compiled([__file__, *sys.argv[1:]])  # builds first if the source changed
    scenario = parse_scenario(SCENARIO, "bench/virtual_million.py").with_devices(args.devices)
    model = replace(without_testbed_limits(TESTBED), cname_ttl_s=args.ttl)
    sampler = TreeMemorySampler()
    sampler.start()
    started = time.perf_counter()
    quota = scenario.limits.account_connects_per_s if scenario.limits else None
    shards = args.shards or default_shards(args.devices, quota)
    facts = run_virtual(scenario, model=model, shards=shards)
    simulated = time.perf_counter() - started
    report, _ = fleet_report(facts, scenario.criteria, scenario.name)
    reported = time.perf_counter() - started - simulated
    tree_peak_mb = sampler.stop()
    sim = facts.extra["simulator"]
    assert isinstance(sim, dict)
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rto, back = report["rto_s"], report["time_to_recovered_s"]
    assert isinstance(rto, dict) and isinstance(back, dict)
    print(f"devices                 {args.devices:,} in {sim['shards']} processes")
    print(f"core and engine         {'compiled (mypyc)' if sim['compiled'] else 'interpreted'}")
    print(f"virtual time            {facts.duration_s - facts.connections_from:.0f} s")
    print(f"wall: simulate          {simulated:.1f} s (summed over shards: {sim['phases_s']})")
    print(f"wall: report            {reported:.1f} s (results.fleet_report)")
    print(f"core events             {sim['core_events']:,} ({sim['core_events_per_s']:,}/s)")
    print(f"heap entries            {sim['heap_entries']:,}")
    print(f"peak RSS                parent {parent_mb:.0f} MB, largest shard {child_mb:.0f} MB")
    print(f"{'':24}all processes at once: {tree_peak_mb:.0f} MB PSS (sampled every second)")
    print(f"RTO p50/p95/p99         {rto['p50']:.2f} / {rto['p95']:.2f} / {rto['p99']:.2f} s")
    print(f"99 % back after         {back['99%']:.2f} s; recovered {report['recovered']:.1%}")
    print(
        f"connect peak            {report['connect_attempts_peak_per_s']:,}/s; "
        f"throttled {report['throttled_connects']}; failbacks {report['failbacks']:,}"
    )


if __name__ == "__main__":
    main()
