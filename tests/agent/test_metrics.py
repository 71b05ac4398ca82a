"""Prometheus text from a status document: every sample described, valid
syntax, and nothing but `iotdr_agent_up 0` when no agent answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from iotdr.agent.metrics import METRICS, render, write_atomically

# The exposition format's sample line: name, optional labels, a number.
SAMPLE = re.compile(r'^([a-z_][a-z0-9_]*)(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')

STATUS: dict[str, Any] = {
    "state": "connected",
    "connected": True,
    "endpoint": "a1-ats.iot.us-east-1.amazonaws.com:8883",
    "region": "us-east-1",
    "role": "primary",
    "since": 1795990000.5,
    "failovers": 2,
    "failbacks": 1,
    "last_failover_s": 0.42,
    "stability_window_s": 10.0,
    "dns_rejected": 0,
    "dns_failures": 3,
    "client_id": 'dev-"1"',
    "started": 1795980000.25,
    "bridge": {
        "spool": {
            "path": "/var/lib/iotdr/spool.db",
            "depth": 7,
            "bytes": 4096,
            "oldest_age_s": 1.5,
        },
        "received": 10,
        "spooled": 10,
        "forwarded": 3,
        "acknowledged": 3,
        "dead_lettered": 0,
        "dropped_qos0": 0,
        "backpressure": 0,
        "commands": 1,
        "pending_local": 0,
    },
}


def parse(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    described: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            described.add(line.split()[2])
            continue
        assert SAMPLE.match(line), line
        key, value = line.rsplit(" ", 1)
        assert key.split("{")[0] in described, f"{key} has no HELP/TYPE before it"
        samples[key] = float(value)
    return samples


def test_a_connected_agent_with_a_bridge() -> None:
    samples = parse(render(STATUS))
    assert samples["iotdr_agent_up"] == 1
    assert samples["iotdr_agent_connected"] == 1
    assert samples['iotdr_agent_state{state="connected"}'] == 1
    assert samples['iotdr_agent_state{state="waiting"}'] == 0
    assert samples["iotdr_agent_failovers_total"] == 2
    assert samples["iotdr_agent_last_failover_seconds"] == 0.42
    assert samples["iotdr_bridge_spool_depth"] == 7
    assert samples["iotdr_bridge_spool_disk_full"] == 0
    info = next(k for k in samples if k.startswith("iotdr_agent_info"))
    assert 'client_id="dev-\\"1\\""' in info and 'region="us-east-1"' in info


def test_no_agent_is_up_0_only() -> None:
    assert parse(render(None)) == {"iotdr_agent_up": 0}


def test_unknown_values_are_left_out() -> None:
    samples = parse(render({**STATUS, "last_failover_s": None, "bridge": None}))
    assert "iotdr_agent_last_failover_seconds" not in samples
    assert not any(k.startswith("iotdr_bridge") for k in samples)


def test_every_metric_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [m.name for m in METRICS if f"`{m.name}`" not in readme]
    assert not missing


def test_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "iotdr.prom"
    write_atomically(target, render(None))
    assert target.read_text() == render(None)
    assert [p.name for p in tmp_path.iterdir()] == ["iotdr.prom"]
