"""Fleet figures from device records: RTO, recovery, flaps, the verdict,
and report.json's documented shape."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.device_summary import FLAP_WINDOW_S
from iotdr.simulator.expectations import expectations
from iotdr.simulator.plots import PLOTS
from iotdr.simulator.report import write_report
from iotdr.simulator.results import Observed, RunFacts, fleet_report, percentile
from iotdr.simulator.scenario import Criteria, Fault, parse_scenario

ROLES = {"primary": "region-a", "secondary": "region-b"}
KILL = Fault(at_s=5, fault="kill", region="primary")
RESTORE = Fault(at_s=20, fault="restore", region="primary")

# report.json: these fields are a contract (README, "report.json").
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "devices": int,
    "rto_s": dict,
    "recovered": float,
    "messages": dict,
    "connect_attempts_peak_per_s": int,
    "throttled_connects": (int, type(None)),
    "flaps": int,
    "verdict": str,
}


def _record(client_id: str, *connections: Connection, produced: int = 10) -> DeviceRecord:
    record = DeviceRecord(client_id=client_id, produced=produced, acknowledged=produced)
    record.connections.extend(connections)
    record.attempts.extend(c.connected_at - 0.05 for c in connections)
    return record


def _c(region: str, at: float, ack: float | None, end: float | None, why: str = "x") -> Connection:
    return Connection(
        attempt=1, region=region, why=why, connected_at=at, first_ack_at=ack, ended_at=end
    )


def _facts(*records: DeviceRecord, faults: list[tuple[float, Fault]]) -> RunFacts:
    return RunFacts(
        records=records,
        duration_s=40.0,
        faults=expectations(faults, ROLES),
        connections_from=-3.0,
        quota_per_s=500.0,
        observed=Observed(
            distinct=sum(r.produced for r in records), total=sum(r.produced for r in records)
        ),
    )


def test_percentiles_are_nearest_rank_and_infinity_is_never() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([1.0, math.inf], 100) is None
    assert percentile([], 50) is None


def test_rto_counts_from_the_fault_to_the_first_ack_in_the_right_region() -> None:
    moved = _record("a", _c("region-a", -2, -1.9, 5.0), _c("region-b", 5.4, 5.6, None))
    never = _record("b", _c("region-a", -2, -1.9, 5.0))
    already = _record("c", _c("region-b", -2, -1.9, None))
    report, devices = fleet_report(
        _facts(moved, never, already, faults=[(5.0, KILL)]), Criteria(), "t"
    )
    assert [d.disrupted for d in devices] == [True, True, False]
    assert devices[0].rto_s == pytest.approx(0.6)
    assert devices[0].connect_rto_s == pytest.approx(0.4)
    assert devices[1].rto_s is None
    rto = report["rto_s"]
    assert isinstance(rto, dict)
    assert rto["p50"] == pytest.approx(0.6)
    assert rto["max"] is None and rto["unrecovered"] == 1
    assert report["recovered"] == pytest.approx(2 / 3)
    assert report["verdict"] == "fail"


def test_a_failback_that_does_not_hold_is_a_flap() -> None:
    steady = _record(
        "a",
        _c("region-a", -2, -1.9, 5.0),
        _c("region-b", 5.4, 5.6, 31.0),
        _c("region-a", 31.0, 31.1, None, why="failback"),
    )
    flapping = _record(
        "b",
        _c("region-a", -2, -1.9, 5.0),
        _c("region-b", 5.4, 5.6, 25.0),
        _c("region-a", 25.0, 25.1, 25.0 + FLAP_WINDOW_S / 2, why="failback"),
        _c("region-b", 30.0, 30.1, None),
    )
    report, devices = fleet_report(
        _facts(steady, flapping, faults=[(5.0, KILL), (20.0, RESTORE)]), Criteria(), "t"
    )
    assert [d.flaps for d in devices] == [0, 1]
    assert devices[0].failback_s == pytest.approx(11.0)
    assert report["flaps"] == 1
    assert report["failed_criteria"] == ["recovered 50.0% < 100.0%", "1 flaps > 0"]


def test_loss_and_duplicates_come_from_what_the_regions_received() -> None:
    record = _record("a", _c("region-a", -2, -1.9, None), produced=10)
    record.acknowledged_sequences.update(range(9))  # 9 acknowledged, #9 never sent
    received = frozenset({0, 1, 2, 3, 4, 5, 6})  # 7 and 8 died with their region
    facts = RunFacts(
        records=[record],
        duration_s=40.0,
        faults=expectations([], ROLES),
        connections_from=-3.0,
        quota_per_s=None,
        observed=Observed(distinct=7, total=10, received={"a": received}),
    )
    report, _ = fleet_report(facts, Criteria(), "t")
    messages = report["messages"]
    assert isinstance(messages, dict)
    assert (messages["lost"], messages["lost_in_region"], messages["duplicated"]) == (3, 2, 3)
    assert report["verdict"] == "fail"


def test_report_json_has_its_documented_fields() -> None:
    record = _record("a", _c("region-a", -2, -1.9, 5.0), _c("region-b", 5.4, 5.6, None))
    report, _ = fleet_report(_facts(record, faults=[(5.0, KILL)]), Criteria(), "t")
    for field, kind in SCHEMA.items():
        assert isinstance(report[field], kind), field
    rto, messages = report["rto_s"], report["messages"]
    assert isinstance(rto, dict) and isinstance(messages, dict)
    assert set(rto) >= {"p50", "p95", "p99", "max"}
    assert set(messages) >= {
        "published",
        "acknowledged",
        "lost",
        "duplicated",
    }
    assert report["verdict"] in ("pass", "fail")
    assert 0.0 <= report["recovered"] <= 1.0  # type: ignore[operator]


def test_every_report_file_is_written_for_runs_with_and_without_faults(tmp_path: Path) -> None:
    scenario = parse_scenario("duration_s: 40\nfleet: {devices: 2}\n", "s.yaml")
    moved = _record("a", _c("region-a", -2, -1.9, 5.0), _c("region-b", 5.4, 5.6, None))
    steady = _record("b", _c("region-a", -2, -1.9, None))
    for name, faults in (("faulted", [(5.0, KILL)]), ("steady", [])):
        out = tmp_path / name
        written = write_report(out, scenario, _facts(moved, steady, faults=faults))
        for file in ("report.json", "devices.csv", "report.html", *PLOTS):
            assert (out / file).stat().st_size > 0, file
        assert written.report["devices"] == 2
        assert "disrupted" in written.summary()
