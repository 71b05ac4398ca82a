"""A scenario in virtual time, from the scenario file to `RunFacts`.

The fleet's settings are built exactly as for a run on the testbed (the
testbed's endpoints and DNS names, the scenario's `agent:` overrides, the
daemon's defaults), so the same scenario file means the same devices; no
testbed is brought up. A large fleet is split across processes
(`shards`): each runs its share of the devices with its share of the
account quota, the shards agree on t=0 after their ramp-ups, and their
records are merged for one report.
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from iotdr.agent.core.settings import Settings
from iotdr.simulator.compiled_build import is_compiled
from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.expectations import expectations
from iotdr.simulator.fleet_summary import FleetSummary, merged, summarise_fleet
from iotdr.simulator.results import RegionSecond, RunFacts
from iotdr.simulator.scenario import Fault, Scenario, device_settings
from iotdr.simulator.virtual_fleet import Regions, VirtualFleet
from iotdr.simulator.virtual_shards import ShardsProgress, run_sharded
from iotdr.simulator.virtual_telemetry import finished
from iotdr.simulator.virtual_world import TESTBED, WorldModel
from iotdr.testbed.topology import (
    CNAME_NAME,
    ENDPOINT_ALLOWLIST,
    REGION_PORT,
    REGIONS,
    TXT_DEFAULT,
)


def the_testbed_regions() -> Regions:
    """The regions and DNS of a testbed (`iotdr testbed up`'s fixed shape)."""
    return Regions(
        primary=REGIONS["primary"].name,
        secondary=REGIONS["secondary"].name,
        primary_host=REGIONS["primary"].host,
        secondary_host=REGIONS["secondary"].host,
        txt=TXT_DEFAULT,
    )


def virtual_settings(scenario: Scenario) -> Settings:
    """What every device starts from: the testbed's agent.yaml endpoints and
    DNS (as `real_run.testbed_target` takes them) under the scenario's agent
    overrides, validated by the agent's own parser."""
    base = {
        "endpoints": {
            role: {"host": spec.host, "port": REGION_PORT} for role, spec in REGIONS.items()
        },
        "dns": {"name": CNAME_NAME, "allowlist": [ENDPOINT_ALLOWLIST]},
    }
    return device_settings(scenario.agent, base=base, source=scenario.source)


@dataclass(slots=True)
class ShardResult:
    summary: FleetSummary  # the shard's devices, summarised for the report
    records: list[DeviceRecord]  # only if asked for (`keep_records`)
    applied: list[tuple[float, Fault]]
    seconds: list[RegionSecond]
    t0: float
    events: int
    popped: int
    dns_queries: int
    max_rss_mb: float
    wall_s: float = 0.0
    phases_s: dict[str, float] = field(default_factory=dict)


def finish_records(fleet: VirtualFleet) -> list[DeviceRecord]:
    """Telemetry worked out per device, then every time shifted to t=0."""
    for _ in finished_records(fleet):
        pass
    return fleet.records


def finished_records(fleet: VirtualFleet) -> Iterator[DeviceRecord]:
    """`finish_records`, one record at a time (virtual_telemetry.finished)."""
    scenario = fleet.scenario
    assert fleet.t0 is not None and fleet.t_telemetry is not None
    t_telemetry = fleet.t_telemetry
    holes = {
        region.name: spans for region, spans in zip(fleet.regions, fleet.blackholes, strict=True)
    }
    return finished(
        fleet.records,
        [t_telemetry + phase for phase in fleet.phase],
        t0=fleet.t0,
        interval_s=scenario.fleet.publish_interval_s,
        stop=fleet.t_stop,
        end=fleet.t0 + scenario.duration_s + scenario.drain_s,
        blackholes=holes,
        first_ack=fleet.model.first_ack_s,
        draw=fleet._rng.random,
    )


def _seconds(fleet: VirtualFleet) -> list[RegionSecond]:
    assert fleet.t0 is not None
    out = []
    for region in fleet.regions:
        for second, (accepted, refused, refused_client) in sorted(region.seconds.items()):
            out.append(
                RegionSecond(
                    second=int(second - fleet.t0),
                    region=region.name,
                    accepted=accepted,
                    refused=refused,
                    refused_client=refused_client,
                )
            )
    return out


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


AgreeOnStart = Callable[[float], float]


def run_shard(  # noqa: PLR0917 - the shard's whole brief
    scenario: Scenario,
    model: WorldModel,
    shard: int,
    shards: int,
    agree: AgreeOnStart,
    on_progress: Callable[[VirtualFleet], None] | None = None,
    *,
    keep_records: bool = False,
) -> ShardResult:
    with _cyclic_gc_paused():
        result, _fleet = _run_shard(
            scenario, model, shard, shards, agree, on_progress, keep_records
        )
        return result


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A shard makes no reference cycles, so reference counting frees all it
    drops; the cyclic collector would only walk every device's core again on
    each full collection (15 % of a 200,000-device run's CPU)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_shard(  # noqa: PLR0917 - the shard's whole brief
    scenario: Scenario,
    model: WorldModel,
    shard: int,
    shards: int,
    agree: AgreeOnStart,
    on_progress: Callable[[VirtualFleet], None] | None,
    keep_records: bool,
) -> tuple[ShardResult, VirtualFleet]:
    """The shard's result, and its fleet for a caller that would rather
    not free it (a shard process: virtual_shards)."""
    started = time.perf_counter()
    fleet = VirtualFleet(
        scenario,
        virtual_settings(scenario),
        the_testbed_regions(),
        model,
        shard=shard,
        shards=shards,
    )
    built = time.perf_counter()
    tick = (lambda: on_progress(fleet)) if on_progress is not None else None
    ramped = fleet.ramp_up(tick)
    waiting = time.perf_counter()
    t_telemetry = agree(ramped)
    waited = time.perf_counter() - waiting  # for the other shards' ramp-ups
    fleet.start_timeline(t_telemetry)
    fleet.finish(tick)
    simulated = time.perf_counter()
    # The cores stay: freeing them would cost more time (a second per
    # 500,000) than the little memory the summary needs.
    assert fleet.t0 is not None
    faults = expectations(fleet.applied, the_testbed_regions().role_to_region())
    # Each record finished and summarised in one go, while it is in the cache.
    summary = summarise_fleet(finished_records(fleet), faults, scenario.duration_s, -fleet.t0)
    records = fleet.records
    result = ShardResult(
        summary=summary,
        records=records if keep_records else [],
        applied=fleet.applied,
        seconds=_seconds(fleet),
        t0=fleet.t0,
        events=fleet.events,
        popped=fleet.queue.popped,
        dns_queries=fleet.dns.queries,
        max_rss_mb=_rss_mb(),
        phases_s={
            "build": round(built - started, 2),
            "simulate": round(simulated - built - waited, 2),
            "wait": round(waited, 2),
            "records": round(time.perf_counter() - simulated, 2),  # and the summary
        },
    )
    return result, fleet


def run_virtual(
    scenario: Scenario,
    *,
    model: WorldModel = TESTBED,
    shards: int = 1,
    on_progress: Callable[[VirtualFleet], None] | None = None,
    on_shards: Callable[[ShardsProgress], None] | None = None,
    keep_records: bool = False,
    running: int | None = None,
) -> RunFacts:
    """Runs `scenario` in virtual time; the facts a real run would give,
    with the fleet's summary. The devices' records come too only with
    `keep_records` (a million of them cost gigabytes and seconds to hand
    over; the report needs only the summary). More than one shard run as
    processes (virtual_shards), at most `running` at a time (default: one
    per CPU); `on_shards` hears how they stand, `on_progress` (one shard
    only) sees the fleet itself."""
    wall = time.perf_counter()
    shards = max(1, min(shards, scenario.fleet.devices))
    with _cyclic_gc_paused():  # what the shards hand over makes no cycles either
        if shards == 1:
            agree = lambda t: t  # noqa: E731 - one shard agrees with itself
            results = [
                run_shard(scenario, model, 0, 1, agree, on_progress, keep_records=keep_records)
            ]
        else:
            shard = partial(_run_shard, keep_records=keep_records)
            regions = the_testbed_regions()
            names = [regions.primary, regions.secondary]
            results = run_sharded(shard, scenario, model, shards, names, on_shards, running)
        return merge(scenario, results, time.perf_counter() - wall)


def merge(scenario: Scenario, results: Sequence[ShardResult], wall_s: float) -> RunFacts:
    first = results[0]
    records: list[DeviceRecord] = []
    for result in results:
        records.extend(result.records)
    # Shards hold devices k, k+K, ...: back into fleet order.
    shards = len(results)
    if shards > 1 and records:
        ordered: list[DeviceRecord | None] = [None] * len(records)
        for k, result in enumerate(results):
            ordered[k::shards] = result.records
        records = [r for r in ordered if r is not None]
    totals: dict[tuple[int, str], list[int]] = {}
    for result in results:
        for s in result.seconds:
            counts = totals.setdefault((s.second, s.region), [0, 0, 0])
            counts[0] += s.accepted
            counts[1] += s.refused
            counts[2] += s.refused_client
    seconds = [
        RegionSecond(second=k[0], region=k[1], accepted=c[0], refused=c[1], refused_client=c[2])
        for k, c in sorted(totals.items())
    ]
    roles = the_testbed_regions().role_to_region()
    events = sum(r.events for r in results)
    limits = scenario.limits
    extra: dict[str, Any] = {
        "simulator": {
            "engine": "virtual time (the agent's core in every device; simulator/WORLD_MODEL.md)",
            "shards": shards,
            "compiled": is_compiled(),  # the mypyc build: simulator/compiled_build.py
            "core_events": events,
            "heap_entries": sum(r.popped for r in results),
            "wall_s": round(wall_s, 2),
            "core_events_per_s": round(events / wall_s) if wall_s > 0 else None,
            "max_rss_mb_per_shard": max(r.max_rss_mb for r in results),
            "dns_queries": sum(r.dns_queries for r in results),
            # Each phase's seconds, added up over the shards (the wait for
            # the others' ramp-ups included): where a run's time went.
            "phases_s": {
                phase: round(sum(r.phases_s.get(phase, 0.0) for r in results), 2)
                for phase in first.phases_s
            },
        }
    }
    return RunFacts(
        records=records,
        duration_s=scenario.duration_s,
        faults=expectations(first.applied, roles),
        connections_from=-first.t0,
        quota_per_s=limits.account_connects_per_s if limits else None,
        observed=None,
        region_seconds=seconds,
        mode="virtual",
        extra=extra,
        summary=merged([r.summary for r in results]),
    )
