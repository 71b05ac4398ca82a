"""One device's figures for the report, from what it recorded (pure).

Every time here is in seconds from t=0. Definitions (results.py and the
README repeat them for readers of report.json):
- A device is *disrupted* by the first fault if, right after it, the device
  is not connected to the region it should now be in (see expectations).
- Its *RTO* is the time from that fault to the first PUBACK on a connection
  to the right region made after the fault; *connect RTO* stops at CONNACK.
- Its *failback* is the time from the fault that restored the initial
  region to its first connection there after it.
- *Recovered*: connected to the right region at the end of the run.
- A *flap*: a move to another region whose connection lasts less than
  `FLAP_WINDOW_S`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.expectations import Expectation

FLAP_WINDOW_S: Final = 10.0


@dataclass(slots=True, init=False)
class DeviceSummary:
    """One row of devices.csv. Its `__init__` is written out so that mypyc
    compiles it (a generated one stays interpreted: about 4 µs for these
    fourteen fields, a million times for a million devices)."""

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

    def __init__(  # noqa: PLR0917 - one argument per column of devices.csv
        self,
        client_id: str,
        disrupted: bool,
        rto_s: float | None,
        connect_rto_s: float | None,
        failback_s: float | None,
        final_region: str | None,
        recovered: bool,
        connect_attempts: int,
        failed_connects: int,
        flaps: int,
        failbacks: int,
        produced: int,
        acknowledged: int,
        resent: int,
    ) -> None:
        self.client_id = client_id
        self.disrupted = disrupted
        self.rto_s = rto_s
        self.connect_rto_s = connect_rto_s
        self.failback_s = failback_s
        self.final_region = final_region
        self.recovered = recovered
        self.connect_attempts = connect_attempts
        self.failed_connects = failed_connects
        self.flaps = flaps
        self.failbacks = failbacks
        self.produced = produced
        self.acknowledged = acknowledged
        self.resent = resent


class Timeline:
    """What a device's figures are measured against, worked out once for
    the fleet: the first fault, the one that restored the initial region,
    the right region at the end, and when the run ends."""

    def __init__(self, faults: Sequence[Expectation], duration_s: float) -> None:
        initial = faults[0]
        first = faults[1] if len(faults) > 1 else None
        self.end = duration_s
        self.has_first = first is not None
        self.first_since = first.since if first is not None else 0.0
        self.first_region = first.region if first is not None else None
        self.initial_region = initial.region
        restored = None
        if first is not None:
            restored = next((e for e in faults[2:] if e.region == initial.region), None)
        self.has_restored = restored is not None
        self.restored_since = restored.since if restored is not None else 0.0
        self.final_region = faults[-1].region


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


def summarise_device(record: DeviceRecord, timeline: Timeline) -> DeviceSummary:
    connections = record.connections
    disrupted = False
    rto: float | None = None
    connect_rto: float | None = None
    if timeline.has_first:
        since = timeline.first_since
        disrupted = _region_at(connections, since) != timeline.first_region
        if disrupted:
            arrived = _first_in(connections, timeline.first_region, since)
            if arrived is not None:
                connect_rto = arrived.connected_at - since
                if arrived.first_ack_at is not None:
                    rto = arrived.first_ack_at - since
    failback: float | None = None
    if timeline.has_restored:
        back = _first_in(connections, timeline.initial_region, timeline.restored_since)
        if back is not None:
            failback = back.connected_at - timeline.restored_since
    final_region = _region_at(connections, timeline.end)
    attempts = 0
    for t in record.attempts:
        if t >= 0:
            attempts += 1
    failbacks = 0
    for connection in connections:
        if connection.why == "failback":
            failbacks += 1
    return DeviceSummary(
        record.client_id,
        disrupted,
        rto,
        connect_rto,
        failback,
        final_region,
        final_region is not None and final_region == timeline.final_region,
        attempts,
        sum(record.failures.values()),
        _flaps(connections),
        failbacks,
        record.produced,
        record.acknowledged,
        record.resent,
    )
