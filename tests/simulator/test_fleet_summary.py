"""A fleet's summary is what the report and the plots would compute from
every record, whoever made it: the parent from the records, or each shard
from its own devices, merged."""

from __future__ import annotations

import math
import pickle
from dataclasses import astuple, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.device_rows import DeviceRows
from iotdr.simulator.device_summary import Timeline, summarise_device
from iotdr.simulator.fleet_summary import (
    AttemptsPerSecond,
    ConnectedOverTime,
    FleetSummary,
    summarise_fleet,
)
from iotdr.simulator.results import fleet_report
from iotdr.simulator.scenario import load_scenario
from iotdr.simulator.virtual_run import run_virtual

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def _sorted_changes(
    connections: list[Connection], start: float, end: float, step: float
) -> dict[str, list[int]]:
    """The plain way: every start and end as a change, sorted, and the
    level read off at each sample."""
    changes: dict[str, list[tuple[float, int]]] = {}
    for c in connections:
        changes.setdefault(c.region, []).append((c.connected_at, 1))
        if c.ended_at is not None:
            changes.setdefault(c.region, []).append((c.ended_at, -1))
    samples = max(1, math.floor((end - start) / step) + 1)
    out: dict[str, list[int]] = {}
    for region, deltas in sorted(changes.items()):
        deltas.sort()
        counts, level, i = [], 0, 0
        for n in range(samples):
            t = start + n * step
            while i < len(deltas) and deltas[i][0] <= t:
                level += deltas[i][1]
                i += 1
            counts.append(level)
        out[region] = counts
    return out


# Times on and next to the samples, where `<=` decides.
_ON_GRID = st.integers(-70, 130).map(lambda n: -30.3 + n * 0.5)
_TIME = st.one_of(
    _ON_GRID,
    _ON_GRID.map(lambda t: math.nextafter(t, math.inf)),
    _ON_GRID.map(lambda t: math.nextafter(t, -math.inf)),
    st.floats(-80.0, 80.0),
)


@st.composite
def _connections(draw: st.DrawFn) -> list[Connection]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        at = draw(_TIME)
        length = draw(st.one_of(st.none(), st.floats(0.0, 40.0)))
        out.append(
            Connection(
                attempt=1,
                region=draw(st.sampled_from(["region-a", "region-b"])),
                why="x",
                connected_at=at,
                ended_at=None if length is None else at + length,
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(_connections(), st.sampled_from([-30.3, -12.0, 0.0]), st.sampled_from([0.5, 0.25]))
def test_connected_over_time_counts_as_sorting_every_change_does(
    connections: list[Connection], start: float, step: float
) -> None:
    series = ConnectedOverTime(start, 40.0, step)
    series.add(connections)
    assert series.series() == _sorted_changes(connections, start, 40.0, step)


def test_attempts_are_counted_by_second_and_read_from_any_second_counted() -> None:
    attempts = AttemptsPerSecond.between(-2.5, 1.5)
    attempts.add([-3.0, -2.5, -0.1, 0.0, 0.99, 2.0, 2.1, 3.0])
    assert attempts.first == -3 and attempts.counts == [2, 0, 1, 2, 0, 2]  # -3 s to 2 s
    assert attempts.since(0) == [2, 0, 2]
    with pytest.raises(ValueError, match="counted from -3"):
        attempts.since(-4)


def _columns(summary: FleetSummary) -> list[list[str]]:
    """Every column as text (a NaN, which stands for None, equals no NaN)."""
    columns = summary.devices.__reduce__()[1]
    assert len(columns) == 14
    return [[repr(v) for v in column] for column in columns]  # type: ignore[attr-defined]


def test_shards_summarise_their_devices_as_the_parent_would_from_every_record() -> None:
    sc = load_scenario(SCENARIOS / "region-blackhole.yaml").with_devices(301)
    facts = run_virtual(sc, shards=3, keep_records=True)
    assert facts.summary is not None and len(facts.records) == 301
    whole = summarise_fleet(facts.records, facts.faults, facts.duration_s, facts.connections_from)
    merged = facts.summary
    assert _columns(merged) == _columns(whole)
    assert (merged.attempts.first, merged.attempts.counts) == (
        whole.attempts.first,
        whole.attempts.counts,
    )
    assert (merged.connected_from, merged.connected) == (whole.connected_from, whole.connected)
    report, rows = fleet_report(facts, sc.criteria, sc.name)
    from_records, record_rows = fleet_report(replace(facts, summary=None), sc.criteria, sc.name)
    assert report == from_records
    assert [astuple(r) for r in rows] == [astuple(r) for r in record_rows]
    # Without the records, the parent has the same report.
    alone = run_virtual(sc, shards=3)
    assert alone.records == []
    report_alone, _ = fleet_report(alone, sc.criteria, sc.name)
    report.pop("simulator"), report_alone.pop("simulator")
    assert report_alone == report


def test_a_summary_crosses_from_a_shard_whole() -> None:
    record = DeviceRecord(client_id="d-1", attempts=[-1.0, 6.0])
    record.connections.append(Connection(1, "region-a", "initial", -0.9, -0.8, 5.5))
    record.connections.append(Connection(2, "region-b", "failover", 6.1, None, None))
    sc = load_scenario(SCENARIOS / "region-hard-down.yaml").with_devices(1)
    facts = run_virtual(sc)
    summary = summarise_fleet([record], facts.faults, 20.0, -3.0)
    again = pickle.loads(pickle.dumps(summary, protocol=pickle.HIGHEST_PROTOCOL))
    assert _columns(again) == _columns(summary)
    assert again.attempts.counts == summary.attempts.counts
    assert again.connected == summary.connected
    row = summary.devices.row(0)
    assert row.connect_rto_s is not None and row.failback_s is None


def test_rows_read_as_a_sequence_of_device_summaries() -> None:
    sc = load_scenario(SCENARIOS / "region-hard-down.yaml").with_devices(5)
    facts = run_virtual(sc, keep_records=True)
    assert facts.summary is not None
    rows = DeviceRows(facts.summary.devices)
    every = list(rows)
    assert len(rows) == 5 and [r.client_id for r in every] == sc.fleet.client_ids()
    assert astuple(rows[-1]) == astuple(every[4]) and astuple(rows[0]) == astuple(every[0])
    assert [astuple(r) for r in rows[1:3]] == [astuple(r) for r in every[1:3]]
    with pytest.raises(IndexError):
        rows[5]


def test_rows_past_a_chunk_land_in_order() -> None:
    """A summary's rows wait in lists and move into its arrays a chunk at
    a time: a fleet larger than two chunks comes out whole and in order."""
    sc = load_scenario(SCENARIOS / "region-hard-down.yaml").with_devices(1)
    faults = run_virtual(sc).faults
    records = []
    for i in range(140_000):
        record = DeviceRecord(client_id=f"d-{i}", attempts=[-1.0], produced=i, resent=i % 7)
        record.connections.append(Connection(1, "region-a", "initial", -0.5, None, 0.001 * i))
        records.append(record)
    summary = summarise_fleet(records, faults, 20.0, -3.0)
    timeline = Timeline(faults, 20.0)
    assert len(summary.devices) == len(records)
    for i in (0, 65_535, 65_536, 131_071, 131_072, 139_999):
        assert astuple(summary.devices.row(i)) == astuple(summarise_device(records[i], timeline))
