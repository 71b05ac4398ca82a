"""Real vs virtual: the same scenarios on the testbed's brokers and in
virtual time, side by side.

For each scenario in bench/validation/ (hard down, CNAME moved, blackhole;
1,000 devices by default) it runs `iotdr simulate run` on a fresh testbed
and `iotdr simulate run --virtual`, and prints RTO p50/p95/p99, time to 99 %
recovered and the peak connect attempts per second from both report.json
files with their difference. Run it under the measurement lock:

    flock /tmp/iotdr-measure.lock .venv/bin/python bench/virtual_validation.py \\
        --devices 1000 --out /tmp/validation
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("hard-down", "cname-moved", "blackhole")
FIGURES = (
    ("RTO p50 (s)", ("rto_s", "p50")),
    ("RTO p95 (s)", ("rto_s", "p95")),
    ("RTO p99 (s)", ("rto_s", "p99")),
    ("99 % back (s)", ("time_to_recovered_s", "99%")),
    ("peak connects/s", ("connect_attempts_peak_per_s",)),
)


def simulate(scenario: Path, out: Path, devices: int, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(scenario)]
    argv += ["--out", str(out), "--devices", str(devices), "-q", *extra]
    subprocess.run(argv, check=False, timeout=1800)
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def figure(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def compare(
    real: dict[str, Any], virtual: dict[str, Any]
) -> list[tuple[str, float | None, float | None, float | None]]:
    rows = []
    for label, path in FIGURES:
        r, v = figure(real, path), figure(virtual, path)
        diff = None if r in (None, 0) or v is None else (v - r) / r
        rows.append((label, r, v, diff))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("run/validation"))
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    parser.add_argument("--reuse", action="store_true", help="reuse existing real reports")
    args = parser.parse_args()
    table = []
    for name in args.only or SCENARIOS:
        scenario = ROOT / "bench" / "validation" / f"{name}.yaml"
        real_out = args.out / f"{name}-real"
        if args.reuse and (real_out / "report.json").exists():
            real = json.loads((real_out / "report.json").read_text())
        else:
            real = simulate(scenario, real_out, args.devices)
        virtual = simulate(scenario, args.out / f"{name}-virtual", args.devices, "--virtual")
        for label, r, v, diff in compare(real, virtual):
            table.append((name, label, r, v, diff))
    print(f"| scenario ({args.devices} devices) | figure | real | virtual | difference |")
    print("|---|---|---:|---:|---:|")
    for name, label, r, v, diff in table:
        shown = "n/a" if diff is None else f"{diff:+.0%}"
        rs = "never" if r is None else f"{r:.2f}" if "s)" in label else f"{r:.0f}"
        vs = "never" if v is None else f"{v:.2f}" if "s)" in label else f"{v:.0f}"
        print(f"| {name} | {label} | {rs} | {vs} | {shown} |")


if __name__ == "__main__":
    main()
