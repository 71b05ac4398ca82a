"""Shards: how many a fleet gets, and at most `running` of them work at once,
all agreeing on t=0 first."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from iotdr.simulator.scenario import Scenario, load_scenario
from iotdr.simulator.virtual_fleet import VirtualFleet
from iotdr.simulator.virtual_run import the_testbed_regions, virtual_settings
from iotdr.simulator.virtual_shards import (
    DEVICES_PER_SHARD,
    ShardsProgress,
    default_shards,
    run_sharded,
)
from iotdr.simulator.virtual_world import TESTBED, WorldModel

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


@pytest.mark.parametrize(
    ("devices", "quota", "cpus", "expected"),
    [
        (100, 500.0, 2, 1),  # a small fleet: one process
        (DEVICES_PER_SHARD * 3, None, 2, 3),  # by size
        (1_000_000, 100_000.0, 2, 123),  # the benchmark: ~8,000 devices each
        (1_000_000, 20_000.0, 2, 40),  # no share of the quota under 500/s
        (1_000_000, 500.0, 2, 2),  # ... but every CPU may work
        (1_000_000, 500.0, 8, 8),
        (10_000, 100_000.0, 2, 2),
    ],
)
def test_a_fleet_is_split_by_size_without_starving_a_shards_quota(
    devices: int, quota: float | None, cpus: int, expected: int
) -> None:
    assert default_shards(devices, quota, cpus) == expected


def _fleet(scenario: Scenario, model: WorldModel, shard: int, shards: int) -> VirtualFleet:
    settings = virtual_settings(scenario)
    return VirtualFleet(
        scenario, settings, the_testbed_regions(), model, shard=shard, shards=shards
    )


Span = tuple[float, float]


def _timed_shard(
    scenario: Scenario,
    model: WorldModel,
    shard: int,
    shards: int,
    agree: Callable[[float], float],
    _on_progress: object,
) -> tuple[tuple[list[Span], float], VirtualFleet]:
    """A stand-in shard that only records when it held a turn: from its
    start to its agreement on t=0, and from then to its end."""
    spans: list[Span] = []
    begun = time.monotonic()
    time.sleep(0.05)  # work, holding the turn
    ended = time.monotonic()
    spans.append((begun, ended))
    agreed = agree(float(shard))  # each shard "ramped up" by t = its number
    begun = time.monotonic()
    time.sleep(0.05)
    spans.append((begun, time.monotonic()))
    return (spans, agreed), _fleet(scenario, model, shard, shards)


@pytest.mark.parametrize("running", [1, 2])
def test_at_most_running_shards_hold_a_turn_and_all_agree_on_the_latest_start(
    running: int,
) -> None:
    scenario = load_scenario(SCENARIOS / "region-hard-down.yaml").with_devices(4)
    seen: list[ShardsProgress] = []
    results = run_sharded(
        _timed_shard, scenario, TESTBED, 4, ["region-a", "region-b"], seen.append, running
    )
    assert [agreed for _, agreed in results] == [3.0] * 4  # the latest ramp-up
    spans = sorted(span for shard_spans, _ in results for span in shard_spans)
    assert len(spans) == 8
    for moment, _ in spans:  # at each span's start, who holds a turn
        holding = sum(1 for begun, ended in spans if begun <= moment < ended)
        assert holding <= running
    assert seen and seen[-1].shards == 4
    assert seen[-1].done == 4 and seen[-1].ramped == 4
