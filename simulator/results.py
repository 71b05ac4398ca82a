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
  `flap_window_s`.
- *Connect attempts*: Connect commands the devices' cores issued, per
  second of the run; *throttled*: CONNECTs the regions refused by quota.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.expectations import Expectation
from iotdr.simulator.scenario import Criteria

FLAP_WINDOW_S = 10.0


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
    """Everything the runner measured, relative to t=0."""

    records: Sequence[DeviceRecord]
    duration_s: float
    faults: Sequence[Expectation]  # the first is the state at t=0
    connections_from: float  # when the ramp-up began (negative)
    quota_per_s: float | None
    observed: Observed | None = None
    region_seconds: Sequence[RegionSecond] = ()
    mode: str = "real"
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class DeviceSummary:
    client_id: str
    disrupted: bool
    rto_s: float | None
    connect_rto_s: float | None
    failback_s: float | None
    final_region: str | None
    recovered: bool
    connect_attempts: int
    failed_connects: int
    flaps: int
    failbacks: int
    produced: int
    acknowledged: int
    resent: int


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None when it falls on an infinite value."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    value = ordered[rank - 1]
    return None if math.isinf(value) else value


def _region_at(connections: Sequence[Connection], t: float) -> str | None:
    for connection in reversed(connections):
        if connection.connected_at <= t and (
            connection.ended_at is None or connection.ended_at > t
        ):
            return connection.region
    return None


def _first_in(
    connections: Sequence[Connection], region: str | None, after: float
) -> Connection | None:
    for connection in connections:
        if connection.region == region and connection.connected_at >= after:
            return connection
    return None


def _flaps(connections: Sequence[Connection]) -> int:
    flaps = 0
    previous: str | None = None
    for connection in connections:
        moved = previous is not None and connection.region != previous
        ended = connection.ended_at
        if (
            moved
            and connection.connected_at >= 0
            and ended is not None
            and ended - connection.connected_at < FLAP_WINDOW_S
        ):
            flaps += 1
        previous = connection.region
    return flaps


def summarise_device(record: DeviceRecord, facts: RunFacts) -> DeviceSummary:
    connections = record.connections
    end = facts.duration_s
    initial = facts.faults[0]
    first = facts.faults[1] if len(facts.faults) > 1 else None
    disrupted = False
    rto = connect_rto = None
    if first is not None:
        disrupted = _region_at(connections, first.since) != first.region
        if disrupted:
            arrived = _first_in(connections, first.region, first.since)
            if arrived is not None:
                connect_rto = arrived.connected_at - first.since
                if arrived.first_ack_at is not None:
                    rto = arrived.first_ack_at - first.since
    failback = None
    restored = next(
        (e for e in facts.faults[2:] if e.region == initial.region and first is not None), None
    )
    if restored is not None:
        back = _first_in(connections, initial.region, restored.since)
        if back is not None:
            failback = back.connected_at - restored.since
    final = facts.faults[-1]
    final_region = _region_at(connections, end)
    return DeviceSummary(
        client_id=record.client_id,
        disrupted=disrupted,
        rto_s=rto,
        connect_rto_s=connect_rto,
        failback_s=failback,
        final_region=final_region,
        recovered=final_region is not None and final_region == final.region,
        connect_attempts=sum(1 for t in record.attempts if t >= 0),
        failed_connects=sum(record.failures.values()),
        flaps=_flaps(connections),
        failbacks=sum(1 for c in connections if c.why == "failback"),
        produced=record.produced,
        acknowledged=record.acknowledged,
        resent=record.resent,
    )


def _spread(values: Sequence[float | None]) -> dict[str, float | None]:
    finite = [math.inf if v is None else v for v in values]
    return {
        "p50": percentile(finite, 50),
        "p95": percentile(finite, 95),
        "p99": percentile(finite, 99),
        "max": percentile(finite, 100),
        "count": len(finite),
        "unrecovered": sum(1 for v in values if v is None),
    }


def _time_to_fraction(values: Sequence[float | None]) -> dict[str, float | None]:
    finite = [math.inf if v is None else v for v in values]
    return {f"{p:g}%": percentile(finite, p) for p in (50, 99, 100)}


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


def attempts_per_second(records: Sequence[DeviceRecord], start: float, end: float) -> list[int]:
    """Connect attempts in each second from `start` (floor) to `end`."""
    first = math.floor(start)
    bins = [0] * (max(0, math.ceil(end) - first) + 1)
    for record in records:
        for t in record.attempts:
            index = math.floor(t) - first
            if 0 <= index < len(bins):
                bins[index] += 1
    return bins


def connected_over_time(
    records: Sequence[DeviceRecord], start: float, end: float, step: float = 0.5
) -> dict[str, list[int]]:
    """Devices connected to each region, sampled every `step` seconds."""
    changes: dict[str, list[tuple[float, int]]] = {}
    for record in records:
        for c in record.connections:
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
) -> tuple[dict[str, object], list[DeviceSummary]]:
    """report.json's content and the per-device rows."""
    devices = [summarise_device(r, facts) for r in facts.records]
    disrupted = [d for d in devices if d.disrupted]
    produced = sum(d.produced for d in devices)
    acknowledged = sum(d.acknowledged for d in devices)
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
    attempts = attempts_per_second(facts.records, 0.0, facts.duration_s)
    throttled: int | None = None
    throttled_client: int | None = None
    if facts.region_seconds:
        in_run = [s for s in facts.region_seconds if 0 <= s.second <= facts.duration_s]
        throttled = sum(s.refused for s in in_run)
        throttled_client = sum(s.refused_client for s in in_run)
    failbacks = [d.failback_s for d in devices if d.failback_s is not None]
    report: dict[str, object] = {
        "scenario": scenario_name,
        "mode": facts.mode,
        "devices": len(devices),
        "disrupted": len(disrupted),
        "rto_s": _spread([d.rto_s for d in disrupted]),
        "connect_rto_s": _spread([d.connect_rto_s for d in disrupted]),
        "time_to_recovered_s": _time_to_fraction([d.rto_s for d in disrupted]),
        "recovered": (sum(1 for d in devices if d.recovered) / len(devices)) if devices else 0.0,
        "messages": {
            "published": produced,
            "acknowledged": acknowledged,
            "lost": lost,
            "duplicated": duplicated,
            "lost_in_region": lost_in_region,
            "resent": sum(d.resent for d in devices),
            "observed": facts.observed is not None,
        },
        "connect_attempts_peak_per_s": max(attempts, default=0),
        "connect_attempts": sum(attempts),
        "quota_per_s": facts.quota_per_s,
        "throttled_connects": throttled,
        "throttled_by_client_id": throttled_client,
        "flaps": sum(d.flaps for d in devices),
        "failbacks": sum(d.failbacks for d in devices),
        "failback_s": _spread(failbacks) if failbacks else None,
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
    return report, devices
