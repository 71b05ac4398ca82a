"""What does the distributed engine cost? The same scenario, two engines.

Runs one hard-down scenario (2,000 devices by default) through `iotdr
simulate run` twice on this machine: the local engine (one asyncio process,
the CRT) and the Locust engine (a master and two worker processes, paho
under gevent). Prints, for each: RTO percentiles, time to 99 % recovered,
and the fleet's CPU seconds (the local process; the sum of the workers)
and peak RSS, then the distributed engine's overhead per device. Run it
under the shared measurement lock:

    flock /tmp/iotdr-measure.lock .venv/bin/python bench/locust_overhead.py --devices 2000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCENARIO = """
name: bench-locust-overhead
duration_s: {duration}
drain_s: 10
fleet:
  devices: {devices}
  connect_rate_per_s: 400
  settle_s: 3
  publish_interval_s: 5
timeline:
  - {{at_s: 5, fault: kill, region: primary}}
agent:
  connection:
    connect_spread_s: {spread}
  failback:
    enabled: false
limits:
  account_connects_per_s: 500
criteria:
  recovered_min: 1.0
"""


def run(engine: str, scenario: Path, out: Path, workers: int) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(scenario),
        "--out", str(out), "-q", "--engine", engine,
    ]  # fmt: skip
    if engine == "locust":
        argv += ["--workers", str(workers)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1200)
    if done.returncode not in (0, 1):
        sys.exit(f"{engine}: exit {done.returncode}\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def lag_p99_ms(report: dict[str, Any]) -> float | None:
    """The event loop's lag p99 (the worst worker's, for Locust)."""
    if report.get("engine") == "locust":
        workers = report["locust"]["per_worker"]
        lags = [w["loop_lag_ms"]["p99"] for w in workers if "loop_lag_ms" in w]
        return max(lags) if lags else None
    lag = report["simulator"].get("loop_lag_ms")
    return None if lag is None else float(lag["p99"])


def cost(report: dict[str, Any]) -> tuple[float, float]:
    """(fleet CPU seconds, peak RSS MB of the biggest fleet process)."""
    if report.get("engine") == "locust":
        workers = report["locust"]["per_worker"]
        return sum(w["cpu_s"] for w in workers), max(w["max_rss_mb"] for w in workers)
    simulator = report["simulator"]
    return float(simulator["cpu_s"]), float(simulator["max_rss_mb"])


def show(name: str, report: dict[str, Any]) -> None:
    rto = report["rto_s"]
    to = report["time_to_recovered_s"]

    def s(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f}"

    cpu, rss = cost(report)
    print(
        f"{name:>7}: devices {report['devices']}, recovered {report['recovered']:.1%}; "
        f"RTO p50 {s(rto['p50'])} p95 {s(rto['p95'])} p99 {s(rto['p99'])} max {s(rto['max'])} s; "
        f"99% back at {s(to['99%'])} s; lost {report['messages']['lost']}; "
        f"fleet CPU {cpu:.1f} s ({cpu / report['devices'] * 1000:.1f} ms/device), "
        f"peak RSS {rss:.0f} MB; disrupted {report['disrupted']}, flaps {report['flaps']}, "
        f"loop lag p99 {lag_p99_ms(report)} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--spread", type=float, default=4.0, help="connection.connect_spread_s")
    parser.add_argument("--keep", type=Path, help="keep the reports here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotdr-bench-locust-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        scenario = base / "scenario.yaml"
        scenario.write_text(
            SCENARIO.format(devices=args.devices, duration=args.duration, spread=args.spread)
        )
        reports = {}
        for engine in ("local", "locust"):
            reports[engine] = run(engine, scenario, base / engine, args.workers)
            show(engine, reports[engine])
    local_cpu, _ = cost(reports["local"])
    locust_cpu, _ = cost(reports["locust"])
    extra_ms = (locust_cpu - local_cpu) / args.devices * 1000
    print(
        f"overhead of the Locust engine ({args.workers} workers, paho under gevent): "
        f"{extra_ms:+.1f} ms CPU per device over the run, x{locust_cpu / local_cpu:.2f} the "
        f"local engine's fleet CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
