"""The Locust engine on real brokers: a master and two worker processes on
this machine against the testbed. The report has the local engine's shape
and counts every device once; a worker killed mid-run is reported, its
devices lost, and the run ends. No timing assertions: the machine is shared.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.device_summary import DeviceSummary
from iotdr.simulator.expectations import expectations
from iotdr.simulator.locust_run import free_port, locustfile, master_argv, worker_argv
from iotdr.simulator.results import RunFacts, fleet_report
from iotdr.simulator.run import certificates_dir, connect_limits, fleet_tls_environment
from iotdr.simulator.scenario import Criteria, Scenario, load_scenario
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.testbed import Testbed

pytestmark = pytest.mark.testbed

HARD_DOWN = """
name: locust-hard-down
duration_s: {duration}
drain_s: 5
fleet:
  devices: {devices}
  connect_rate_per_s: 200
  settle_s: 1
  publish_interval_s: 1
timeline:
  - {{at_s: 3, fault: kill, region: primary}}
agent:
  connection:
    connect_spread_s: 0.5
limits:
  account_connects_per_s: 500
criteria:
  recovered_min: 1.0
"""


def _local_report_fields() -> set[str]:
    """The fields the one-machine report always has (its pure builder's)."""
    facts = RunFacts(
        records=[DeviceRecord(client_id="x")],
        duration_s=1.0,
        faults=expectations([], {"primary": "a", "secondary": "b"}),
        connections_from=0.0,
        quota_per_s=None,
    )
    report, _ = fleet_report(facts, Criteria(), "shape")
    return set(report)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "devices.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_two_workers_run_a_hard_down_failover_with_the_local_report(tmp_path: Path) -> None:
    devices = 200
    scenario = tmp_path / "hard-down.yaml"
    scenario.write_text(HARD_DOWN.format(devices=devices, duration=10))
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(scenario),
            "--out", str(out), "--engine", "locust", "--workers", "2", "-q",
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert _local_report_fields() <= set(report)  # the same shape as one machine's
    assert report["engine"] == "locust"
    assert report["workers"] == 2
    assert report["locust"]["workers_lost"] == []
    assert [w["devices"] for w in report["locust"]["per_worker"]] == [100, 100]
    rows = _rows(out)
    assert list(rows[0]) == [f.name for f in dataclasses.fields(DeviceSummary)]
    ids = [row["client_id"] for row in rows]
    assert sorted(ids) == load_scenario(scenario).with_devices(devices).fleet.client_ids()
    assert report["devices"] == devices  # every device counted once
    assert report["disrupted"] == devices
    assert report["recovered"] == 1.0
    assert report["rto_s"]["unrecovered"] == 0
    assert report["messages"]["observed"] is True
    assert report["messages"]["lost"] == 0
    assert report["messages"]["published"] > devices
    for plot in ("connected.png", "connects.png", "rto_cdf.png"):
        assert (out / plot).stat().st_size > 1000
    assert (out / "locust_stats.csv").read_text().count("CONNECT") >= 2  # Locust's own CSV
    assert done.returncode == (0 if report["verdict"] == "pass" else 1)


def _hard_down_on_a_testbed(
    tmp_path: Path, devices: int, duration: int
) -> tuple[Path, Scenario, Path, Testbed]:
    """The hard-down scenario file, its parsed form, an output folder, and a
    testbed with the scenario's CONNECT quotas (the caller brings it down)."""
    scenario_path = tmp_path / "hard-down.yaml"
    scenario_path.write_text(HARD_DOWN.format(devices=devices, duration=duration))
    scenario = load_scenario(scenario_path)
    out = tmp_path / "out"
    out.mkdir()
    testbed = Testbed.up(tmp_path / "testbed", connect_limits=connect_limits(scenario.limits))
    return scenario_path, scenario, out, testbed


def test_a_worker_killed_mid_run_is_reported_and_the_run_ends(tmp_path: Path) -> None:
    devices = 60
    scenario_path, scenario, out, testbed = _hard_down_on_a_testbed(tmp_path, devices, 10)
    started: list[subprocess.Popen[str]] = []
    try:
        issue_client_certificates(
            testbed.layout, scenario.fleet.client_ids(), certificates_dir(testbed)
        )
        env = fleet_tls_environment(certificates_dir(testbed))
        port = free_port()
        master = subprocess.Popen(
            testbed.netns_argv(
                master_argv(
                    scenario_path, out=out, testbed=testbed.directory, workers=2, port=port,
                    devices=None,
                )
            ),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(master)
        workers = [
            subprocess.Popen(
                testbed.netns_argv(worker_argv("127.0.0.1", port)),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(2)
        ]
        started += workers
        assert master.stderr is not None
        lines = []
        for line in master.stderr:
            lines.append(line)
            if "kill primary" in line:  # the failover is under way: kill a worker
                workers[0].kill()
                break
        _, rest = master.communicate(timeout=180)  # the run ends on its own
        log = "".join(lines) + rest
        assert master.returncode in (0, 1), log[-3000:]
        assert "lost: its devices count as lost" in log
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate()
        testbed.down()
    report = json.loads((out / "report.json").read_text())
    assert report["workers"] == 2
    assert len(report["locust"]["workers_lost"]) == 1
    assert report["locust"]["devices_lost"] == devices // 2
    rows = _rows(out)
    assert len(rows) == devices == report["devices"]
    assert len({row["client_id"] for row in rows}) == devices
    lost = [row for row in rows if row["connect_attempts"] == "0" and row["produced"] == "0"]
    assert len(lost) == devices // 2
    assert all(row["recovered"] == "False" for row in lost)
    assert report["recovered"] == 0.5  # the surviving worker's devices all recovered
    assert report["verdict"] == "fail"


def test_real_endpoint_mode_cuts_a_region_from_inside_the_workers_namespace(
    tmp_path: Path,
) -> None:
    """The real-AWS path, with the testbed's regions standing in for AWS IoT:
    no testbed verb is used; the master tells each worker to cut the
    primary's addresses in its own namespace (iptables), and the fleet
    fails over as it would from a region it can no longer reach."""
    devices = 40
    scenario_path, scenario, out, testbed = _hard_down_on_a_testbed(tmp_path, devices, 8)
    started: list[subprocess.Popen[str]] = []
    try:
        certificates = certificates_dir(testbed)
        issue_client_certificates(testbed.layout, scenario.fleet.client_ids(), certificates)
        env = fleet_tls_environment(certificates)
        port = free_port()
        master = [
            sys.executable, "-m", "locust", "-f", locustfile(), "--master", "--headless",
            "--only-summary", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", "2", "-u", "2", "-r", "2",
            "--iotdr-scenario", str(scenario_path), "--iotdr-out", str(out),
            "--iotdr-endpoints", str(testbed.info.agent_config),
            "--iotdr-certificates", str(certificates),
        ]  # fmt: skip
        started.append(
            subprocess.Popen(
                testbed.netns_argv(master),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        for _ in range(2):
            argv = worker_argv("127.0.0.1", port, netns=testbed.netns)
            started.append(
                subprocess.Popen(
                    testbed.netns_argv(argv),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        _, log = started[0].communicate(timeout=180)
        assert started[0].returncode in (0, 1), log[-3000:]
        assert "not applied" not in log, log[-3000:]
        assert "kill primary" in log
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate()
        testbed.down()
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "locust"
    assert report["devices"] == report["disrupted"] == devices
    assert report["recovered"] == 1.0  # all on the secondary, which no one cut
    assert report["messages"]["observed"] is False  # no testbed observer on real AWS
    assert report["messages"]["lost"] == 0
