"""Real vs virtual at small scale: the same validation scenario on the
testbed's brokers and in virtual time must tell the same story.

100 devices, so the tolerances are wide enough for what 100 samples and a
shared, noisy machine allow (a p95 of 100 devices is the 95th of them; the
real run's event loop lags under load): each figure must agree within 25 %
plus half a second. bench/virtual_validation.py compares 1,000 devices and
prints the table the README shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 100


def small(name: str, directory: Path) -> Path:
    """The validation scenario for 100 devices: the quota and the spread
    scaled with the fleet (fleet / quota = spread = 5 s)."""
    data = yaml.safe_load((ROOT / "bench" / "validation" / f"{name}.yaml").read_text())
    data["fleet"]["devices"] = DEVICES
    data["agent"]["connection"]["connect_spread_s"] = 5
    data["limits"]["account_connects_per_s"] = 20
    data["duration_s"] = 30
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def simulate(scenario: Path, out: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "iotdr.cli.main", "simulate", "run", str(scenario),
         "--out", str(out), "--devices", str(DEVICES), "-q", *extra],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    return report


def _figure(report: dict[str, object], section: str, key: str) -> float:
    values = report[section]
    assert isinstance(values, dict)
    value = values[key]
    assert value is not None, f"{section}.{key} is null: not every device recovered"
    return float(value)


@pytest.mark.parametrize("name", ["hard-down", "blackhole"])
def test_virtual_time_agrees_with_the_real_run(tmp_path: Path, name: str) -> None:
    scenario = small(name, tmp_path)
    real = simulate(scenario, tmp_path / "real")
    virtual = simulate(scenario, tmp_path / "virtual", "--virtual")
    assert (real["mode"], virtual["mode"]) == ("real", "virtual")
    assert real["recovered"] == virtual["recovered"] == 1.0
    for section, key in (("rto_s", "p50"), ("rto_s", "p95"), ("time_to_recovered_s", "99%")):
        r, v = _figure(real, section, key), _figure(virtual, section, key)
        assert abs(v - r) <= 0.25 * r + 0.5, f"{section}.{key}: real {r:.2f} s, virtual {v:.2f} s"
