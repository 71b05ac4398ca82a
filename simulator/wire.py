"""What travels between the Locust master and its workers (pure).

Locust carries custom messages as msgpack: plain dicts, lists, strings and
numbers. A device's record goes as one dict with times already relative to
the shared t=0, so the master only concatenates; every float keeps its
full precision (Locust's own request statistics would round them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotdr.simulator.device import Connection, DeviceRecord

# Message types (worker -> master and master -> worker).
SHARD = "iotdr-shard"  # master -> worker: your devices, the scenario, the ramp start
READY = "iotdr-ready"  # worker -> master: my devices are connected (or gave up)
T0 = "iotdr-t0"  # master -> workers: t=0 as a wall-clock instant
FAULT = "iotdr-fault"  # master -> workers: apply a worker-side fault now
FAULT_DONE = "iotdr-fault-done"  # worker -> master: it is in effect here
RESULTS = "iotdr-results"  # worker -> master: every device's record


def record_to_wire(record: DeviceRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "attempts": list(record.attempts),
        "connections": [
            [c.attempt, c.region, c.why, c.connected_at, c.first_ack_at, c.ended_at]
            for c in record.connections
        ],
        "failures": dict(record.failures),
        "produced": record.produced,
        "acknowledged": record.acknowledged,
        "resent": record.resent,
        "acknowledged_sequences": sorted(record.acknowledged_sequences),
    }


def record_from_wire(data: Mapping[str, Any]) -> DeviceRecord:
    return DeviceRecord(
        client_id=str(data["client_id"]),
        attempts=[float(t) for t in data["attempts"]],
        connections=[
            Connection(
                attempt=int(a),
                region=str(region),
                why=str(why),
                connected_at=float(connected),
                first_ack_at=None if acked is None else float(acked),
                ended_at=None if ended is None else float(ended),
            )
            for a, region, why, connected, acked, ended in data["connections"]
        ],
        failures={str(k): int(v) for k, v in data["failures"].items()},
        produced=int(data["produced"]),
        acknowledged=int(data["acknowledged"]),
        resent=int(data["resent"]),
        acknowledged_sequences={int(s) for s in data.get("acknowledged_sequences", ())},
    )


def shards(count: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) slices of the fleet, as even as they go."""
    base, extra = divmod(count, workers)
    out, start = [], 0
    for index in range(workers):
        stop = start + base + (1 if index < extra else 0)
        out.append((start, stop))
        start = stop
    return out
