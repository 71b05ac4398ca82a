"""Real vs virtual: the same scenarios on the testbed's brokers and in
virtual time, side by side.

For each scenario in bench/validation/ (hard down, CNAME moved, blackhole;
1,000 devices by default) it runs `iotdr simulate run` on a fresh testbed
and `iotdr simulate run --virtual`, and prints RTO p50/p95/p99, time to 99 %
recovered and the peak connect attempts per second from both report.json
files with their difference. Run it under the measurement lock:

    flock /tmp/iotdr-measure.lock .venv/bin/python bench/virtual_validation.py \\
        --devices 1000 --out /tmp/validation

Both runs of a scenario give device i the same random draws (simulator/draws.py),
so they differ only in what the world answers. `--seeds 1,2,3` runs each
scenario once per seed (another fleet each time) and prints each pair and
the spread: how much a figure moves from one fleet's draws to another's, the
noise a one-seed comparison cannot see.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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


def with_seed(scenario: Path, seed: int, out: Path) -> Path:
    """The scenario file with `seed` set (the file's own when it is the same)."""
    data = yaml.safe_load(scenario.read_text())
    if data.get("seed", 1) == seed:
        return scenario
    data["seed"] = seed
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{scenario.stem}-seed{seed}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def shown(label: str, value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.2f}" if "s)" in label else f"{value:.0f}"


def span(label: str, values: list[float]) -> str:
    return "n/a" if not values else f"{shown(label, min(values))}..{shown(label, max(values))}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("run/validation"))
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    parser.add_argument("--reuse", action="store_true", help="reuse existing real reports")
    parser.add_argument("--seeds", default="1", help="comma-separated scenario seeds (default 1)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table = []
    for name in args.only or SCENARIOS:
        for seed in seeds:
            tag = name if seeds == [1] else f"{name}-seed{seed}"
            scenario = with_seed(ROOT / "bench" / "validation" / f"{name}.yaml", seed, args.out)
            real_out = args.out / f"{tag}-real"
            if args.reuse and (real_out / "report.json").exists():
                real = json.loads((real_out / "report.json").read_text())
            else:
                real = simulate(scenario, real_out, args.devices)
            virtual = simulate(scenario, args.out / f"{tag}-virtual", args.devices, "--virtual")
            for label, r, v, diff in compare(real, virtual):
                table.append((name, seed, label, r, v, diff))
    print(f"| scenario ({args.devices} devices) | seed | figure | real | virtual | difference |")
    print("|---|---:|---|---:|---:|---:|")
    for name, seed, label, r, v, diff in table:
        difference = "n/a" if diff is None else f"{diff:+.0%}"
        print(
            f"| {name} | {seed} | {label} | {shown(label, r)} | {shown(label, v)} | {difference} |"
        )
    if len(seeds) > 1:
        print()
        print("| scenario | figure | real over seeds | virtual over seeds | difference per seed |")
        print("|---|---|---:|---:|---:|")
        for name in args.only or SCENARIOS:
            for label, _path in FIGURES:
                rows = [row for row in table if row[0] == name and row[2] == label]
                reals = [row[3] for row in rows if row[3] is not None]
                virtuals = [row[4] for row in rows if row[4] is not None]
                diffs = [row[5] for row in rows if row[5] is not None]
                per_seed = "n/a" if not diffs else " ".join(f"{d:+.0%}" for d in diffs)
                reals_, virtuals_ = span(label, reals), span(label, virtuals)
                print(f"| {name} | {label} | {reals_} | {virtuals_} | {per_seed} |")


if __name__ == "__main__":
    main()
