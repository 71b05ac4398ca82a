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
from collections.abc import Callable, Mapping, Sequence

from iotdr.simulator.device import DeviceRecord


def account(
    record: DeviceRecord,
    *,
    first_tick: float,
    interval_s: float,
    stop: float,
    end: float,
    blackholes: Mapping[str, Sequence[tuple[float, float]]],
    ack_latency: Callable[[], float],
) -> None:
    """Fills in `record`'s produced/acknowledged/resent and each connection's
    first_ack_at (absolute virtual times)."""
    total = max(0, math.ceil((stop - first_tick) / interval_s))

    def ticks_before(t: float) -> int:
        return min(total, max(0, math.ceil((t - first_tick) / interval_s)))

    queued = acked = resent = consumed = 0
    for connection in record.connections:
        start = connection.connected_at
        finish = end if connection.ended_at is None else connection.ended_at
        fresh = ticks_before(start) - consumed
        queued += fresh
        consumed += fresh
        healthy_until = finish
        for hole_start, hole_end in blackholes.get(connection.region, ()):
            if hole_start < finish and hole_end > start:
                healthy_until = min(healthy_until, max(hole_start, start))
        if healthy_until > start:
            # A PUBACK arrives `latency` after its PUBLISH; one still due
            # when the connection ends never comes, and the device resends.
            latency = ack_latency()
            if queued:
                if start + latency < finish:
                    acked += queued
                    queued = 0
                    connection.first_ack_at = start + latency
                else:
                    resent += queued
            fresh = ticks_before(min(healthy_until, finish - latency)) - consumed
            if fresh > 0:
                if connection.first_ack_at is None:
                    connection.first_ack_at = first_tick + consumed * interval_s + latency
                acked += fresh
                consumed += fresh
        unanswered = ticks_before(finish) - consumed
        if unanswered > 0:  # published into the blackhole, back in the queue at the end
            queued += unanswered
            resent += unanswered
            consumed += unanswered
        if connection.first_ack_at is not None and connection.first_ack_at > end:
            connection.first_ack_at = None
    record.produced = total
    record.acknowledged = acked
    record.resent = resent
