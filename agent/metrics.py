"""The agent's status as Prometheus text (exposition format 0.0.4).

`iotdr-agent metrics --output FILE` asks the running agent for its status
and writes this, atomically, for node_exporter's textfile collector (the
package's `iotdr-agent-metrics.timer` does so every 15 s). Every metric is
listed in `METRICS` with its help text, which is also what the README's
table documents. When no agent answers, only `iotdr_agent_up 0` is written,
so an alert can fire on it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATES = ("idle", "resolving", "connecting", "connected", "waiting", "stopped")


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # gauge | counter
    help: str


METRICS = (
    Metric("iotdr_agent_up", "gauge", "1 if the agent answered on its control socket"),
    Metric("iotdr_agent_connected", "gauge", "1 while an MQTT session to a region is up"),
    Metric("iotdr_agent_state", "gauge", "1 for the agent's current state (label state)"),
    Metric(
        "iotdr_agent_info",
        "gauge",
        "always 1; labels client_id, region, endpoint, role of the current connection",
    ),
    Metric("iotdr_agent_failovers_total", "counter", "connections made on another endpoint"),
    Metric("iotdr_agent_failbacks_total", "counter", "returns to the preferred endpoint"),
    Metric(
        "iotdr_agent_last_failover_seconds",
        "gauge",
        "the last move: from losing the old connection to connected on the new one",
    ),
    Metric(
        "iotdr_agent_stability_window_seconds", "gauge", "the current failback stability window"
    ),
    Metric("iotdr_agent_dns_rejected_total", "counter", "DNS answers refused by the allowlist"),
    Metric("iotdr_agent_dns_failures_total", "counter", "failed DNS lookups"),
    Metric("iotdr_agent_state_since_seconds", "gauge", "Unix time the current state began"),
    Metric("iotdr_agent_start_time_seconds", "gauge", "Unix time the agent started"),
    Metric("iotdr_bridge_received_total", "counter", "messages delivered by the local broker"),
    Metric("iotdr_bridge_spooled_total", "counter", "messages durably stored in the spool"),
    Metric("iotdr_bridge_forwarded_total", "counter", "PUBLISHes sent to the cloud, resends too"),
    Metric("iotdr_bridge_acknowledged_total", "counter", "cloud PUBACKs that emptied the spool"),
    Metric("iotdr_bridge_dead_lettered_total", "counter", "messages moved to the dead letters"),
    Metric("iotdr_bridge_dropped_qos0_total", "counter", "QoS 0 messages dropped while offline"),
    Metric("iotdr_bridge_backpressure_total", "counter", "times a full spool paused local acks"),
    Metric("iotdr_bridge_commands_total", "counter", "cloud-to-local messages delivered"),
    Metric("iotdr_bridge_spool_depth", "gauge", "messages waiting in the spool"),
    Metric("iotdr_bridge_spool_bytes", "gauge", "size of the spool on disk"),
    Metric("iotdr_bridge_spool_oldest_age_seconds", "gauge", "age of the oldest spooled message"),
    Metric("iotdr_bridge_spool_disk_full", "gauge", "1 while the spool's disk is full"),
)
_BY_NAME = {metric.name: metric for metric in METRICS}

# status field -> metric, for the plain numbers.
_AGENT_NUMBERS = {
    "failovers": "iotdr_agent_failovers_total",
    "failbacks": "iotdr_agent_failbacks_total",
    "last_failover_s": "iotdr_agent_last_failover_seconds",
    "stability_window_s": "iotdr_agent_stability_window_seconds",
    "dns_rejected": "iotdr_agent_dns_rejected_total",
    "dns_failures": "iotdr_agent_dns_failures_total",
    "since": "iotdr_agent_state_since_seconds",
    "started": "iotdr_agent_start_time_seconds",
}
_BRIDGE_COUNTERS = (
    "received",
    "spooled",
    "forwarded",
    "acknowledged",
    "dead_lettered",
    "dropped_qos0",
    "backpressure",
    "commands",
)
_SPOOL_NUMBERS = {
    "depth": "iotdr_bridge_spool_depth",
    "bytes": "iotdr_bridge_spool_bytes",
    "oldest_age_s": "iotdr_bridge_spool_oldest_age_seconds",
    "disk_full": "iotdr_bridge_spool_disk_full",
}


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _samples(status: Mapping[str, Any] | None) -> Iterator[tuple[str, str, float]]:
    """(metric name, label text, value) for every sample the status gives."""
    yield "iotdr_agent_up", "", 1.0 if status is not None else 0.0
    if status is None:
        return
    yield "iotdr_agent_connected", "", 1.0 if status.get("connected") else 0.0
    for state in STATES:
        yield "iotdr_agent_state", f'state="{state}"', 1.0 if status.get("state") == state else 0.0
    labels = ",".join(
        f'{key}="{_label(status.get(key))}"' for key in ("client_id", "region", "endpoint", "role")
    )
    yield "iotdr_agent_info", labels, 1.0
    for field, name in _AGENT_NUMBERS.items():
        value = _number(status.get(field))
        if value is not None:
            yield name, "", value
    bridge = status.get("bridge")
    if not isinstance(bridge, Mapping):
        return
    for counter in _BRIDGE_COUNTERS:
        value = _number(bridge.get(counter))
        if value is not None:
            yield f"iotdr_bridge_{counter}_total", "", value
    spool = bridge.get("spool")
    if isinstance(spool, Mapping):
        for field, name in _SPOOL_NUMBERS.items():
            value = _number(spool.get(field, False if field == "disk_full" else None))
            if value is not None:
                yield name, "", value


def render(status: Mapping[str, Any] | None) -> str:
    """Prometheus text for a status document (None: no agent answered)."""
    lines: list[str] = []
    described: set[str] = set()
    for name, labels, value in _samples(status):
        if name not in described:
            metric = _BY_NAME[name]
            lines += [f"# HELP {name} {metric.help}", f"# TYPE {name} {metric.kind}"]
            described.add(name)
        shown = repr(value) if not value.is_integer() else str(int(value))
        lines.append(f"{name}{{{labels}}} {shown}" if labels else f"{name} {shown}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """node_exporter must never read half a file: write aside, then rename."""
    import tempfile  # noqa: PLC0415 (only this command writes files: 0.6 MiB the daemon skips)

    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
