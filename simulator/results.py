"""From what each device recorded to the fleet's figures and verdict (pure).

Every time here is in seconds from t=0 (the fleet connected and settled).
Definitions (the README repeats them for readers of report.json):
- A device is *disrupted* by the first fault if, right after it, the device
  is not connected to the region it should now be in (see expectations).
- Its *RTO* is the time from that fault to the first PUBACK on a connection
  to the right region made after the fault; *connect RTO* stops at CONNACK.
  Devices that never got there count as infinite (the percentile is null).
- *Recovered*: connected to the right region at the end of the run.
- A *flap*: a move to another region whose connection lasts less than
  `FLAP_WINDOW_S`.
- *Connect attempts*: Connect commands the devices' cores issued, per
  second of the run; *throttled*: CONNECTs the regions refused by quota.

Each device's figures are `device_summary`'s; the report is computed from
the fleet's `FleetSummary` (`fleet_summary`): the one a virtual run's
shards made, else one made here from the records.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.device_rows import DeviceRows
from iotdr.simulator.device_summary import DeviceSummary
from iotdr.simulator.expectations import Expectation
from iotdr.simulator.fleet_summary import FleetSummary, summarise_fleet
from iotdr.simulator.scenario import Criteria


@dataclass(frozen=True, slots=True)
class RegionSecond:
    """CONNECTs one region accepted and refused in one second of the run."""

    second: int
    region: str
    accepted: int
    refused: int  # by either rule
    refused_client: int = 0  # by the one-CONNECT-per-second-per-client-id rule

    def __reduce__(self) -> tuple[type[RegionSecond], tuple[int, str, int, int, int]]:
        # Shards pickle these to the parent; compiled by mypyc, a frozen
        # dataclass cannot be unpickled from its slots, only rebuilt.
        fields = (self.second, self.region, self.accepted, self.refused, self.refused_client)
        return (RegionSecond, fields)


@dataclass(frozen=True, slots=True)
class Observed:
    """What reached the regions, counted by a subscriber to every device topic."""

    distinct: int  # (device, sequence) pairs received at least once
    total: int  # every copy received
    received: Mapping[str, frozenset[int]] = field(default_factory=dict)  # per device


@dataclass(frozen=True, slots=True)
class RunFacts:
    """Everything the runner measured, relative to t=0.

    `summary`, if given, is what `summarise_fleet` makes of the fleet's
    records, and the report is computed from it; `records` may then be
    empty (a large virtual run's parent never holds them)."""

    records: Sequence[DeviceRecord]
    duration_s: float
    faults: Sequence[Expectation]  # the first is the state at t=0
    connections_from: float  # when the ramp-up began (negative)
    quota_per_s: float | None
    observed: Observed | None = None
    region_seconds: Sequence[RegionSecond] = ()
    mode: str = "real"
    extra: Mapping[str, object] = field(default_factory=dict)
    summary: FleetSummary | None = None


def fleet_summary(facts: RunFacts) -> FleetSummary:
    """The run's summary: the one it came with, else made from its records."""
    if facts.summary is not None:
        return facts.summary
    return summarise_fleet(facts.records, facts.faults, facts.duration_s, facts.connections_from)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None when it falls on an infinite value."""
    return _nearest_rank(sorted(values), p)


def _nearest_rank(ordered: Sequence[float], p: float) -> float | None:
    """`percentile` of values already sorted (a fleet's RTOs are sorted once)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    value = ordered[rank - 1]
    return None if math.isinf(value) else value


def _ordered(values: Sequence[float | None]) -> list[float]:
    """Sorted, a device that never got there last (infinite): what the
    figures below read (a million RTOs are sorted once, not per figure)."""
    return sorted([math.inf if v is None else v for v in values])


def _spread(ordered: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": _nearest_rank(ordered, 50),
        "p95": _nearest_rank(ordered, 95),
        "p99": _nearest_rank(ordered, 99),
        "max": _nearest_rank(ordered, 100),
        "count": len(ordered),
        "unrecovered": len(ordered) - bisect.bisect_left(ordered, math.inf),
    }


def _time_to_fraction(ordered: Sequence[float]) -> dict[str, float | None]:
    return {f"{p:g}%": _nearest_rank(ordered, p) for p in (50, 99, 100)}


def refusal_and_connack_gaps(
    attempts: Sequence[float], connected_at: Sequence[float], retry_s: float
) -> tuple[list[float], list[float]]:
    """One device's Connect -> quota refusal noticed, read off its retry
    (which comes `retry_s`, the first JITR retry delay, after the refusal,
    with no connection between), and Connect -> CONNACK. How
    bench/world_latencies.py measures the world model on a real run, and
    how tests check that virtual time answers the same."""
    refusals = [
        later - first - retry_s
        for first, later in itertools.pairwise(attempts)
        if retry_s <= later - first < retry_s + 0.5
        and not any(first <= t <= later for t in connected_at)
    ]
    connacks = [
        at - max(t for t in attempts if t <= at)
        for at in connected_at
        if any(t <= at for t in attempts)
    ]
    return refusals, connacks


def verdict(report: Mapping[str, object], criteria: Criteria) -> list[str]:
    """The criteria the run failed, as sentences; empty means pass."""
    failed = []
    rto = report["rto_s"]
    assert isinstance(rto, dict)
    messages = report["messages"]
    assert isinstance(messages, dict)
    if criteria.rto_p99_max_s is not None:
        p99 = rto["p99"]
        if p99 is None or p99 > criteria.rto_p99_max_s:
            shown = "never" if p99 is None else f"{p99:.2f} s"
            failed.append(f"RTO p99 {shown} > {criteria.rto_p99_max_s:g} s")
    recovered = report["recovered"]
    assert isinstance(recovered, float)
    if recovered < criteria.recovered_min:
        failed.append(f"recovered {recovered:.1%} < {criteria.recovered_min:.1%}")
    if int(messages["lost"]) > criteria.lost_max:
        failed.append(f"{messages['lost']} messages lost > {criteria.lost_max}")
    if criteria.duplicated_max is not None and int(messages["duplicated"]) > (
        criteria.duplicated_max
    ):
        failed.append(f"{messages['duplicated']} duplicated > {criteria.duplicated_max}")
    flaps = report["flaps"]
    assert isinstance(flaps, int)
    if flaps > criteria.flaps_max:
        failed.append(f"{flaps} flaps > {criteria.flaps_max}")
    throttled = report["throttled_connects"]
    if (
        criteria.throttled_connects_max is not None
        and isinstance(throttled, int)
        and throttled > criteria.throttled_connects_max
    ):
        failed.append(f"{throttled} throttled CONNECTs > {criteria.throttled_connects_max}")
    return failed


def fleet_report(
    facts: RunFacts, criteria: Criteria, scenario_name: str
) -> tuple[dict[str, object], Sequence[DeviceSummary]]:
    """report.json's content and the per-device rows."""
    summary = fleet_summary(facts)
    devices = summary.devices
    disrupted = sum(devices.disrupted)
    produced = sum(devices.produced)
    acknowledged = sum(devices.acknowledged)
    lost_in_region = 0
    if facts.observed is not None:
        lost = max(0, produced - facts.observed.distinct)
        duplicated = facts.observed.total - facts.observed.distinct
        # A region that acknowledged a message and died before delivering
        # it lost it; the device did its part (AWS: PUBACK = accepted).
        lost_in_region = sum(
            len(r.acknowledged_sequences - facts.observed.received.get(r.client_id, frozenset()))
            for r in facts.records
        )
    else:
        lost, duplicated = produced - acknowledged, 0
    attempts = summary.attempts.since(0)
    throttled: int | None = None
    throttled_client: int | None = None
    if facts.region_seconds:
        in_run = [s for s in facts.region_seconds if 0 <= s.second <= facts.duration_s]
        throttled = sum(s.refused for s in in_run)
        throttled_client = sum(s.refused_client for s in in_run)
    failbacks = devices.present(devices.failback_s)
    rto = _ordered(devices.of_disrupted(devices.rto_s))
    report: dict[str, object] = {
        "scenario": scenario_name,
        "mode": facts.mode,
        "devices": len(devices),
        "disrupted": disrupted,
        "rto_s": _spread(rto),
        "connect_rto_s": _spread(_ordered(devices.of_disrupted(devices.connect_rto_s))),
        "time_to_recovered_s": _time_to_fraction(rto),
        "recovered": (sum(devices.recovered) / len(devices)) if len(devices) else 0.0,
        "messages": {
            "published": produced,
            "acknowledged": acknowledged,
            "lost": lost,
            "duplicated": duplicated,
            "lost_in_region": lost_in_region,
            "resent": sum(devices.resent),
            "observed": facts.observed is not None,
        },
        "connect_attempts_peak_per_s": max(attempts, default=0),
        "connect_attempts": sum(attempts),
        "quota_per_s": facts.quota_per_s,
        "throttled_connects": throttled,
        "throttled_by_client_id": throttled_client,
        "flaps": sum(devices.flaps),
        "failbacks": sum(devices.failbacks),
        "failback_s": _spread(sorted(failbacks)) if failbacks else None,
        "faults": [
            {"at_s": round(e.since, 3), "fault": e.fault.describe(), "right_region": e.region}
            for e in facts.faults[1:]
            if e.fault is not None
        ],
        "duration_s": facts.duration_s,
        **facts.extra,
    }
    failed = verdict(report, criteria)
    report["verdict"] = "fail" if failed else "pass"
    report["failed_criteria"] = failed
    return report, DeviceRows(devices)
