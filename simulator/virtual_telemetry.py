"""What each virtual device's telemetry did, from its connections (pure).

A device produces a message every `publish_interval_s` from its own phase
until the run stops producing. A message produced while the device has a
working connection is acknowledged a moment later; one produced while it
has none waits in the queue and goes out when the next connection is up
(its first PUBACK arrives `first_ack_s` after CONNACK); one whose PUBACK
is still due when the connection ends, or that was published on a
connection whose region is blackholed, goes back into the queue (counted
as resent), exactly what `device.Device` does message by message (with
at most 100 in flight: exact for outages shorter than 100 publish
intervals). So the counts and each
connection's first acknowledgement follow from the connections alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.virtual_world import Latency


def finished(
    records: Sequence[DeviceRecord],
    first_ticks: Sequence[float],
    *,
    t0: float,
    interval_s: float,
    stop: float,
    end: float,
    blackholes: Mapping[str, Sequence[tuple[float, float]]],
    first_ack: Latency,
    draw: Callable[[], float],
) -> Iterator[DeviceRecord]:
    """Each record in turn, its telemetry accounted (`account`, device i's
    first message at `first_ticks[i]`) and then every time shifted to t=0.
    One record at a time, so that whoever reads them (the shard's summary)
    does while the record is still in the cache."""
    for record, first_tick in zip(records, first_ticks, strict=True):
        account(
            record,
            first_tick=first_tick,
            interval_s=interval_s,
            stop=stop,
            end=end,
            blackholes=blackholes,
            first_ack=first_ack,
            draw=draw,
        )
        record.attempts = [t - t0 for t in record.attempts]
        for c in record.connections:
            c.connected_at -= t0
            if c.first_ack_at is not None:
                c.first_ack_at -= t0
            if c.ended_at is not None:
                c.ended_at -= t0
        yield record


def _ticks_before(t: float, first_tick: float, interval_s: float, total: int) -> int:
    """Messages produced before `t` (of `total`)."""
    return min(total, max(0, math.ceil((t - first_tick) / interval_s)))


_NO_HOLES: tuple[tuple[float, float], ...] = ()


def account(
    record: DeviceRecord,
    *,
    first_tick: float,
    interval_s: float,
    stop: float,
    end: float,
    blackholes: Mapping[str, Sequence[tuple[float, float]]],
    first_ack: Latency,
    draw: Callable[[], float],
) -> None:
    """Fills in `record`'s produced/acknowledged/resent and each connection's
    first_ack_at (absolute virtual times). A PUBACK comes
    `first_ack.sample(draw())` after its PUBLISH: one draw per connection
    that is healthy for a while, in order."""
    total = max(0, math.ceil((stop - first_tick) / interval_s))
    queued = acked = resent = consumed = 0
    for connection in record.connections:
        start = connection.connected_at
        finish = end if connection.ended_at is None else connection.ended_at
        fresh = _ticks_before(start, first_tick, interval_s, total) - consumed
        queued += fresh
        consumed += fresh
        healthy_until = finish
        for hole_start, hole_end in blackholes.get(connection.region, _NO_HOLES):
            if hole_start < finish and hole_end > start:
                healthy_until = min(healthy_until, max(hole_start, start))
        if healthy_until > start:
            # A PUBACK arrives `latency` after its PUBLISH; one still due
            # when the connection ends never comes, and the device resends.
            latency = first_ack.sample(draw())
            if queued:
                if start + latency < finish:
                    acked += queued
                    queued = 0
                    connection.first_ack_at = start + latency
                else:
                    resent += queued
            until = min(healthy_until, finish - latency)
            fresh = _ticks_before(until, first_tick, interval_s, total) - consumed
            if fresh > 0:
                if connection.first_ack_at is None:
                    connection.first_ack_at = first_tick + consumed * interval_s + latency
                acked += fresh
                consumed += fresh
        unanswered = _ticks_before(finish, first_tick, interval_s, total) - consumed
        if unanswered > 0:  # published into the blackhole, back in the queue at the end
            queued += unanswered
            resent += unanswered
            consumed += unanswered
        first_ack_at = connection.first_ack_at
        if first_ack_at is not None and first_ack_at > end:
            connection.first_ack_at = None
    record.produced = total
    record.acknowledged = acked
    record.resent = resent
