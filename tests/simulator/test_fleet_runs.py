"""The simulator on real brokers: each example scenario with 100 devices,
the CONNECT quota under a storm, the per-client-id rule across the fleet.

Every run goes through the command a platform engineer types (`iotdr
simulate run`), which brings up its own testbed. Assertions are about
behaviour (who recovered, what was lost, what the regions refused), never
about how fast: the machine is shared.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotdr.testbed import Testbed

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "scenarios"
DEVICES = 100


def simulate(scenario: Path, out: Path, *extra: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotdr.cli.main",
            "simulate",
            "run",
            str(scenario),
            "--out",
            str(out),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return done.returncode, report


EXAMPLES = ["region-hard-down", "region-blackhole", "cname-moved", "flapping-primary"]


@dataclass(frozen=True)
class Run:
    code: int
    report: dict[str, object]
    out: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every run of this module at once: each has its own testbed and
    spends most of its time waiting out its scenario's timeline."""
    base = tmp_path_factory.mktemp("runs")
    storm = base / "storm.yaml"
    storm.write_text(STORM.format(devices=DEVICES))
    jobs: dict[str, tuple[Path, tuple[str, ...]]] = {
        name: (SCENARIOS / f"{name}.yaml", ("--devices", str(DEVICES))) for name in EXAMPLES
    }
    jobs["storm"] = (storm, ())
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {
            name: pool.submit(simulate, scenario, base / name, *extra)
            for name, (scenario, extra) in jobs.items()
        }
        return {name: Run(*future.result(), out=base / name) for name, future in futures.items()}


def _devices_csv(out: Path) -> list[dict[str, str]]:
    with (out / "devices.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_scenario_with_a_hundred_devices(runs: dict[str, Run], name: str) -> None:
    code, report, out = runs[name].code, runs[name].report, runs[name].out
    rows = _devices_csv(out)
    assert report["devices"] == DEVICES
    assert len(rows) == DEVICES
    assert len({row["client_id"] for row in rows}) == DEVICES  # each device counted once
    assert report["disrupted"] == DEVICES  # the first fault moves the whole fleet
    assert report["recovered"] == 1.0
    messages = report["messages"]
    assert isinstance(messages, dict)
    assert messages["observed"] is True
    assert messages["published"] > DEVICES
    assert messages["lost"] == 0
    assert report["flaps"] == 0
    assert report["throttled_by_client_id"] == 0
    for plot in ("connected.png", "connects.png", "rto_cdf.png"):
        assert (out / plot).stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page  # self-contained
    assert code == (0 if report["verdict"] == "pass" else 1)
    # The testbed the run brought up is down again: its namespace is gone.
    netns = json.loads((out / "testbed" / "testbed.json").read_text())["netns"]
    assert not Path("/var/run/netns", netns).exists()


STORM = """
name: storm
duration_s: 40
fleet:
  devices: {devices}
  connect_rate_per_s: 15
  publish_interval_s: 2
timeline:
  - {{at_s: 3, fault: kill, region: primary}}
agent:
  connection:
    connect_spread_s: 0       # the whole fleet reconnects in the same instant
  failback:
    enabled: false
limits:
  account_connects_per_s: 20
criteria:
  recovered_min: 1.0
"""


def test_a_storm_above_the_quota_is_throttled_and_everyone_still_recovers(
    runs: dict[str, Run],
) -> None:
    report = runs["storm"].report
    throttled = report["throttled_connects"]
    assert isinstance(throttled, int) and throttled > 0
    assert report["connect_attempts_peak_per_s"] > 20  # type: ignore[operator]
    assert report["recovered"] == 1.0
    # Every device's core keeps one CONNECT per second per client id, even
    # while the quota makes it retry: the regions refused none by that rule.
    assert report["throttled_by_client_id"] == 0
    # The primary is never restored: what it acknowledged just before its
    # death and never delivered is the region's loss; the devices lost none.
    messages = report["messages"]
    assert isinstance(messages, dict)
    assert messages["lost"] == messages["lost_in_region"]


REAL_ENDPOINTS = """
name: steady
duration_s: 4
drain_s: 5
fleet:
  devices: 20
  connect_rate_per_s: 50
  certificates: {certificates}
"""


def test_real_endpoints_with_the_fleets_own_certificates(tmp_path: Path) -> None:
    """`--endpoints agent.yaml`: no testbed of the simulator's own and no
    faults; here the "real" endpoints are a testbed's, reached from inside
    its namespace as a load machine would reach AWS IoT."""
    with Testbed.up(tmp_path / "tb") as testbed:
        certificates = tmp_path / "certs"
        minted = subprocess.run(
            [sys.executable, "-m", "iotdr.cli.main", "simulate", "certs", "20",
             "--dir", str(certificates), "--testbed", str(testbed.directory)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert minted.returncode == 0, minted.stderr
        assert len(list(certificates.glob("iotdr-sim-*.pem"))) == 20
        scenario = tmp_path / "steady.yaml"
        scenario.write_text(REAL_ENDPOINTS.format(certificates=certificates))
        out = tmp_path / "out"
        done = subprocess.run(
            testbed.netns_argv(
                [sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(scenario),
                 "--out", str(out), "--endpoints", str(testbed.info.agent_config), "-q"]
            ),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads((out / "report.json").read_text())
        assert report["devices"] == 20
        assert report["recovered"] == 1.0
        assert report["messages"]["observed"] is False
        assert report["messages"]["lost"] == 0
        assert report["messages"]["published"] >= 20
        assert not (out / "testbed").exists()
