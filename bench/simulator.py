"""The fleet simulator at scale: 10,000 mutual-TLS devices, one certificate
each, through a hard-down failover and a failback, on this machine.

Runs the same scenario twice, with `connection.connect_spread_s` at the
agent's default (0.5 s) and at the value the quota implies (fleet size /
account CONNECT quota), and prints for each: RTO percentiles, time to 99 %
recovered, peak CONNECT attempts per second, CONNECTs the regions refused
by quota, and the simulator's own cost (CPU seconds and peak RSS per
device, event-loop lag: when the loop lags, the simulator and not the fleet
is what the figures measure). The regions' broker CPU is printed too: on
two cores the brokers and the simulator share the machine.

    sudo .venv/bin/python bench/simulator.py --devices 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from iotdr.simulator.scenario import DEFAULT_CLIENT_ID
from iotdr.testbed import Testbed
from iotdr.testbed.connect_limits import ConnectLimits
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.prerequisites import raise_open_files_limit

_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def scenario(devices: int, quota: float, spread_s: float, interval_s: float) -> dict[str, object]:
    return {
        "name": f"bench-{devices}-spread-{spread_s:g}",
        "duration_s": 75,
        "drain_s": 15,
        "fleet": {
            "devices": devices,
            "connect_rate_per_s": min(quota * 0.8, 400),
            "publish_interval_s": interval_s,
            "settle_s": 3,
        },
        "timeline": [
            {"at_s": 5, "fault": "kill", "region": "primary"},
            {"at_s": 35, "fault": "restore", "region": "primary"},
        ],
        "agent": {
            "connection": {"connect_spread_s": spread_s},
            # TCP probes: 10,000 TLS handshakes a second during the stability
            # window would measure this machine's CPU, not the fleet.
            "failback": {"probe_depth": "tcp"},
        },
        "limits": {"account_connects_per_s": quota},
        "criteria": {"recovered_min": 0.99},
    }


def broker_cpu_s(testbed: Testbed) -> float:
    total = 0.0
    for region in testbed.state.regions.values():
        pid = region.broker_pid
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def run_one(testbed: Testbed, out: Path, spec: dict[str, object]) -> dict[str, object]:
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = broker_cpu_s(testbed)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(path), "--out",
         str(out), "--testbed", str(testbed.directory), "-q"],
        check=False,
    )  # fmt: skip
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    report["bench_wall_s"] = round(time.monotonic() - started, 1)
    report["broker_cpu_s"] = round(broker_cpu_s(testbed) - before, 1)
    return report


def seconds(value: object) -> str:
    return "never" if value is None else f"{float(str(value)):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--quota", type=float, default=500.0)
    parser.add_argument("--interval", type=float, default=10.0, help="publish interval (s)")
    parser.add_argument("--out", type=Path, help="keep the reports here")
    args = parser.parse_args()
    raise_open_files_limit()
    spreads = [0.5, round(args.devices / args.quota, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        limits = ConnectLimits(account_connects_per_s=args.quota)
        reports = []
        with Testbed.up(out / "testbed", connect_limits=limits) as testbed:
            minted = time.monotonic()
            ids = [DEFAULT_CLIENT_ID.format(index=i) for i in range(args.devices)]
            issue_client_certificates(testbed.layout, ids, testbed.directory / "devices")
            print(f"minted {args.devices} certificates in {time.monotonic() - minted:.1f} s")
            for spread in spreads:
                spec = scenario(args.devices, args.quota, spread, args.interval)
                reports.append(run_one(testbed, out / f"spread-{spread:g}", spec))
                time.sleep(5)  # the regions close the last run's sessions
    print(
        f"\n{args.devices} devices, quota {args.quota:g} CONNECT/s, kill primary at 5 s, "
        "restore at 35 s"
    )
    header = (
        f"{'connect_spread_s':>16} {'RTO p50':>8} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'99% back':>8} {'peak CONN/s':>11} {'throttled':>9} {'recovered':>9} "
        f"{'lost':>5}"
    )
    print(header)
    for spread, r in zip(spreads, reports, strict=True):
        rto, back, messages = r["rto_s"], r["time_to_recovered_s"], r["messages"]
        assert isinstance(rto, dict) and isinstance(back, dict) and isinstance(messages, dict)
        print(
            f"{spread:>16g} {seconds(rto['p50']):>8} {seconds(rto['p95']):>7} "
            f"{seconds(rto['p99']):>7} {seconds(rto['max']):>7} {seconds(back['99%']):>8} "
            f"{r['connect_attempts_peak_per_s']:>11} {r['throttled_connects']!s:>9} "
            f"{float(str(r['recovered'])):>9.1%} {messages['lost']:>5}"
        )
    print("\nthe simulator's own cost")
    for spread, r in zip(spreads, reports, strict=True):
        sim = r["simulator"]
        assert isinstance(sim, dict)
        devices = int(str(r["devices"]))
        print(
            f"  spread {spread:g}: {sim['cpu_s']} CPU s "
            f"({1000 * sim['cpu_s'] / devices:.1f} ms per device), peak RSS {sim['max_rss_mb']} MB "
            f"({1024 * sim['max_rss_mb'] / devices:.0f} KB per device), "
            f"loop lag p99 {sim['loop_lag_ms']['p99']} ms max "
            f"{sim['loop_lag_ms']['max']} ms; brokers {r['broker_cpu_s']} CPU s; "
            f"wall {r['bench_wall_s']} s"
        )


if __name__ == "__main__":
    main()
