"""What the report and the plots need from every device, worked out once (pure).

`summarise_fleet` reduces the devices' records to a `FleetSummary`: each
device's `DeviceSummary` (devices.csv's row), the CONNECT attempts in each
second, and the devices connected to each region every half second.
report.json and the plots are computed from the summary alone, so a
virtual run's shards summarise their own devices side by side and hand
the parent these arrays rather than their records; `merged` puts the
shards' summaries back together in fleet order. A real run summarises its
records the same way, in one process.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.device_summary import DeviceSummary, Timeline, summarise_device
from iotdr.simulator.expectations import Expectation

PLOTTED_RAMP_UP_S: Final = 30.0  # the plots show at most this much of the ramp-up
CONNECTED_STEP_S: Final = 0.5
_NO_TIME: Final = math.nan  # None in a column of times (no figure is ever NaN)
_CHUNK: Final = 65_536  # rows a summary holds in lists before they move into arrays
_Number = TypeVar("_Number", int, float)
_Item = TypeVar("_Item")


def plotted_from(connections_from: float) -> float:
    """Where the plots' time axis starts."""
    return max(connections_from, -PLOTTED_RAMP_UP_S)


def _time(value: float | None) -> float:
    return _NO_TIME if value is None else value


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value


class DeviceColumns:
    """Devices' summaries held as one array per field, in fleet order: a
    million rows are some 100 MB of machine numbers rather than 400 MB of
    objects, and cross from a shard to the parent as memory copies. A time
    that is None is NaN here (no figure is ever NaN)."""

    def __init__(  # noqa: PLR0917 - one argument per column of devices.csv
        self,
        client_ids: list[str],
        disrupted: array[int],
        rto_s: array[float],
        connect_rto_s: array[float],
        failback_s: array[float],
        final_region: list[str | None],
        recovered: array[int],
        connect_attempts: array[int],
        failed_connects: array[int],
        flaps: array[int],
        failbacks: array[int],
        produced: array[int],
        acknowledged: array[int],
        resent: array[int],
    ) -> None:
        self.client_ids = client_ids
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

    def __len__(self) -> int:
        return len(self.client_ids)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Compiled by mypyc, the class cannot be unpickled from its
        # attributes, only rebuilt from them.
        columns = (
            self.client_ids, self.disrupted, self.rto_s, self.connect_rto_s,
            self.failback_s, self.final_region, self.recovered,
            self.connect_attempts, self.failed_connects, self.flaps,
            self.failbacks, self.produced, self.acknowledged, self.resent,
        )  # fmt: skip
        return (DeviceColumns, columns)

    def row(self, i: int) -> DeviceSummary:
        return DeviceSummary(
            self.client_ids[i],
            self.disrupted[i] != 0,
            _optional(self.rto_s[i]),
            _optional(self.connect_rto_s[i]),
            _optional(self.failback_s[i]),
            self.final_region[i],
            self.recovered[i] != 0,
            self.connect_attempts[i],
            self.failed_connects[i],
            self.flaps[i],
            self.failbacks[i],
            self.produced[i],
            self.acknowledged[i],
            self.resent[i],
        )

    def of_disrupted(self, times: array[float]) -> list[float | None]:
        """One column of times (`rto_s`, say) for the disrupted devices."""
        return [_optional(t) for t in itertools.compress(times, self.disrupted)]

    def present(self, times: array[float]) -> list[float]:
        """One column of times for the devices that have one."""
        return [t for t in times if not math.isnan(t)]


class _Rows:
    """DeviceColumns being filled. Rows wait in lists, which a compiled
    append reaches as a C call (an array's append is a method looked up by
    name, ten times as long), and move into the arrays a chunk at a time,
    so the lists never hold more than a chunk of boxed numbers."""

    def __init__(self) -> None:
        self.done = DeviceColumns(
            client_ids=[],
            disrupted=array("b"),
            rto_s=array("d"),
            connect_rto_s=array("d"),
            failback_s=array("d"),
            final_region=[],
            recovered=array("b"),
            connect_attempts=array("q"),
            failed_connects=array("q"),
            flaps=array("q"),
            failbacks=array("q"),
            produced=array("q"),
            acknowledged=array("q"),
            resent=array("q"),
        )
        self.disrupted: list[int] = []
        self.rto_s: list[float] = []
        self.connect_rto_s: list[float] = []
        self.failback_s: list[float] = []
        self.recovered: list[int] = []
        self.connect_attempts: list[int] = []
        self.failed_connects: list[int] = []
        self.flaps: list[int] = []
        self.failbacks: list[int] = []
        self.produced: list[int] = []
        self.acknowledged: list[int] = []
        self.resent: list[int] = []

    def append(self, row: DeviceSummary) -> None:
        self.done.client_ids.append(row.client_id)
        self.done.final_region.append(row.final_region)
        self.disrupted.append(row.disrupted)
        self.rto_s.append(_time(row.rto_s))
        self.connect_rto_s.append(_time(row.connect_rto_s))
        self.failback_s.append(_time(row.failback_s))
        self.recovered.append(row.recovered)
        self.connect_attempts.append(row.connect_attempts)
        self.failed_connects.append(row.failed_connects)
        self.flaps.append(row.flaps)
        self.failbacks.append(row.failbacks)
        self.produced.append(row.produced)
        self.acknowledged.append(row.acknowledged)
        self.resent.append(row.resent)
        if len(self.disrupted) == _CHUNK:
            self._move()

    def _move(self) -> None:
        done = self.done
        _move(self.disrupted, done.disrupted)
        _move(self.rto_s, done.rto_s)
        _move(self.connect_rto_s, done.connect_rto_s)
        _move(self.failback_s, done.failback_s)
        _move(self.recovered, done.recovered)
        _move(self.connect_attempts, done.connect_attempts)
        _move(self.failed_connects, done.failed_connects)
        _move(self.flaps, done.flaps)
        _move(self.failbacks, done.failbacks)
        _move(self.produced, done.produced)
        _move(self.acknowledged, done.acknowledged)
        _move(self.resent, done.resent)

    def columns(self) -> DeviceColumns:
        self._move()
        return self.done


def _move(rows: list[_Number], column: array[_Number]) -> None:
    column.extend(rows)
    rows.clear()


def interleave(parts: Sequence[DeviceColumns]) -> DeviceColumns:
    """Shard k of K holds devices k, k+K, ...: their columns in fleet order."""
    if len(parts) == 1:
        return parts[0]
    return DeviceColumns(
        client_ids=_interleave_lists([p.client_ids for p in parts]),
        disrupted=_interleave_arrays([p.disrupted for p in parts]),
        rto_s=_interleave_arrays([p.rto_s for p in parts]),
        connect_rto_s=_interleave_arrays([p.connect_rto_s for p in parts]),
        failback_s=_interleave_arrays([p.failback_s for p in parts]),
        final_region=_interleave_lists([p.final_region for p in parts]),
        recovered=_interleave_arrays([p.recovered for p in parts]),
        connect_attempts=_interleave_arrays([p.connect_attempts for p in parts]),
        failed_connects=_interleave_arrays([p.failed_connects for p in parts]),
        flaps=_interleave_arrays([p.flaps for p in parts]),
        failbacks=_interleave_arrays([p.failbacks for p in parts]),
        produced=_interleave_arrays([p.produced for p in parts]),
        acknowledged=_interleave_arrays([p.acknowledged for p in parts]),
        resent=_interleave_arrays([p.resent for p in parts]),
    )


def _interleave_arrays(parts: list[array[_Number]]) -> array[_Number]:
    total = sum(len(p) for p in parts)
    out = parts[0][:0]
    out.frombytes(bytes(total * out.itemsize))
    for k, part in enumerate(parts):
        out[k :: len(parts)] = part
    return out


def _interleave_lists(parts: list[list[_Item]]) -> list[_Item]:
    out: list[_Item] = []
    for part in parts:
        out.extend(part)  # the right length; every slot is written below
    for k, part in enumerate(parts):
        out[k :: len(parts)] = part
    return out


class AttemptsPerSecond:
    """Connect attempts in each second from `first` on."""

    def __init__(self, first: int, counts: list[int]) -> None:
        self.first = first
        self.counts = counts

    @staticmethod
    def between(start: float, end: float) -> AttemptsPerSecond:
        """None yet, in each second from `start` (floor) to `end` (ceil)."""
        first = math.floor(start)
        return AttemptsPerSecond(first, [0] * (max(0, math.ceil(end) - first) + 1))

    def add(self, attempts: Iterable[float]) -> None:
        first, counts = self.first, self.counts
        for t in attempts:
            index = math.floor(t) - first
            if 0 <= index < len(counts):
                counts[index] += 1

    def since(self, second: int) -> list[int]:
        """The counts from `second` on (not before `start`)."""
        if second < self.first:
            raise ValueError(f"counted from {self.first}, not {second}")
        return self.counts[second - self.first :]


class ConnectedOverTime:
    """Devices connected to each region at `start`, `start + step`, ...
    up to `end`: each connection's start and end counted at the first
    sample at or after it, then summed up, without sorting the changes."""

    def __init__(self, start: float, end: float, step: float) -> None:
        self.start, self.step = start, step
        self.samples = max(1, math.floor((end - start) / step) + 1)
        # Per region, the change at each sample; the last slot takes what
        # comes after the last sample and is never summed.
        self._changes: dict[str, list[int]] = {}

    def add(self, connections: Iterable[Connection]) -> None:
        for connection in connections:
            changes = self._changes.get(connection.region)
            if changes is None:
                changes = self._changes[connection.region] = [0] * (self.samples + 1)
            changes[self._first_sample(connection.connected_at)] += 1
            if connection.ended_at is not None:
                changes[self._first_sample(connection.ended_at)] -= 1

    def _first_sample(self, t: float) -> int:
        """The first n with t <= start + n * step (each sample's time
        computed exactly so, as the series' readers compute it)."""
        start, step, samples = self.start, self.step, self.samples
        n = min(samples, max(0, math.ceil((t - start) / step)))
        while n > 0 and t <= start + (n - 1) * step:
            n -= 1
        while n < samples and not t <= start + n * step:
            n += 1
        return n

    def series(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for region in sorted(self._changes):
            changes = self._changes[region]
            level, counts = 0, []
            for n in range(self.samples):
                level += changes[n]
                counts.append(level)
            out[region] = counts
        return out


class FleetSummary:
    """Every device's summary and the fleet's series over time."""

    def __init__(
        self,
        devices: DeviceColumns,
        attempts: AttemptsPerSecond,
        connected_from: float,
        connected: dict[str, list[int]],
    ) -> None:
        self.devices = devices
        self.attempts = attempts
        self.connected_from = connected_from  # when `connected`'s first sample is
        self.connected = connected  # every CONNECTED_STEP_S, per region

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # As DeviceColumns': rebuilt from its fields.
        fields = (
            self.devices,
            self.attempts.first,
            self.attempts.counts,
            self.connected_from,
            self.connected,
        )
        return (_summary_of, fields)


def _summary_of(
    devices: DeviceColumns,
    attempts_first: int,
    attempts: list[int],
    connected_from: float,
    connected: dict[str, list[int]],
) -> FleetSummary:
    per_second = AttemptsPerSecond(attempts_first, attempts)
    return FleetSummary(devices, per_second, connected_from, connected)


def summarise_fleet(
    records: Iterable[DeviceRecord],
    faults: Sequence[Expectation],
    duration_s: float,
    connections_from: float,
) -> FleetSummary:
    """The records (times from t=0) reduced to what the report needs."""
    timeline = Timeline(faults, duration_s)
    start = plotted_from(connections_from)
    # From t=0 for the report, from `start` for the plots.
    attempts = AttemptsPerSecond.between(min(start, 0.0), duration_s)
    connected = ConnectedOverTime(start, duration_s, CONNECTED_STEP_S)
    rows = _Rows()
    for record in records:
        rows.append(summarise_device(record, timeline))
        attempts.add(record.attempts)
        connected.add(record.connections)
    return FleetSummary(rows.columns(), attempts, start, connected.series())


def merged(parts: Sequence[FleetSummary]) -> FleetSummary:
    """Shards' summaries (shard k holding devices k, k+K, ...) as one."""
    first = parts[0]
    # Every shard counts over the same seconds and samples (the same t=0).
    counts = zip(*(p.attempts.counts for p in parts), strict=True)
    attempts = AttemptsPerSecond(first.attempts.first, [sum(c) for c in counts])
    connected: dict[str, list[int]] = {}
    for part in parts:
        assert part.attempts.first == first.attempts.first
        assert part.connected_from == first.connected_from
        for region, series in part.connected.items():
            total = connected.setdefault(region, [0] * len(series))
            for n, level in enumerate(series):
                total[n] += level
    return FleetSummary(
        interleave([p.devices for p in parts]),
        attempts,
        first.connected_from,
        {region: connected[region] for region in sorted(connected)},
    )
