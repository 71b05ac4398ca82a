"""The mypyc build of the core and the virtual engine is the same program.

The module fixture compiles the installed source once (about half a
minute); each scenario then runs twice through the CLI, plain and
`--compiled`, and must write the same report and the same per-device CSV
to the last digit. The runs are separate processes, as a user's are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iotdr.simulator.compiled_build import (
    ENV_MARK,
    BuildError,
    build,
    is_compiled,
    rerun_compiled,
    source_key,
)

ROOT = Path(__file__).resolve().parents[2]
# Only what differs between two identical runs: the wall clock's figures.
_WALL_CLOCK = ("wall_s", "core_events_per_s", "max_rss_mb_per_shard", "phases_s", "compiled")

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG cache holding a fresh build (so the CLI finds it there)."""
    home = tmp_path_factory.mktemp("xdg-cache")
    build(home / "iotdr" / "compiled", log=lambda _line: None)
    return home


def _run(scenario: str, out: Path, cache_home: Path, *extra: str) -> dict[str, object]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    env.pop(ENV_MARK, None)
    command = [
        sys.executable, "-m", "iotdr.cli.main", "simulate", "run",
        str(ROOT / "config" / "scenarios" / scenario),
        "--virtual", "--devices", "300", "--out", str(out), "-q", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: the scenario's verdict failed
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    return report


@pytest.mark.parametrize(
    ("scenario", "shards"),
    [
        ("region-hard-down.yaml", "1"),
        ("region-blackhole.yaml", "1"),
        ("cname-moved.yaml", "1"),
        ("region-hard-down.yaml", "2"),  # shards hand their records over pickled
    ],
)
def test_a_compiled_run_writes_the_same_report_as_the_plain_one(
    scenario: str, shards: str, cache_home: Path, tmp_path: Path
) -> None:
    plain = _run(scenario, tmp_path / "plain", cache_home, "--shards", shards)
    compiled = _run(scenario, tmp_path / "compiled", cache_home, "--compiled", "--shards", shards)
    plain_sim, compiled_sim = plain.pop("simulator"), compiled.pop("simulator")
    assert isinstance(plain_sim, dict) and isinstance(compiled_sim, dict)
    assert (plain_sim["compiled"], compiled_sim["compiled"]) == (False, True)
    for key in _WALL_CLOCK:
        plain_sim.pop(key), compiled_sim.pop(key)
    assert compiled_sim == plain_sim  # the same core events, heap entries, DNS queries
    assert compiled == plain
    plain_csv = (tmp_path / "plain" / "devices.csv").read_text()
    assert (tmp_path / "compiled" / "devices.csv").read_text() == plain_csv
    assert plain_csv.count("\n") == 301


def test_a_changed_source_file_is_a_new_build(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    module = tmp_path / "core" / "machine.py"
    module.write_text("X = 1\n")
    before = source_key({"agent": tmp_path})
    module.write_text("X = 2\n")
    assert source_key({"agent": tmp_path}) != before
    (tmp_path / "core" / "machine.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    assert source_key({"agent": tmp_path}) != before  # built files do not count...
    module.write_text("X = 1\n")
    assert source_key({"agent": tmp_path}) == before  # ...only the source


def test_a_rerun_that_still_loads_the_source_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A rerun whose compiled modules did not load must not start a third."""
    assert not is_compiled()
    monkeypatch.setenv(ENV_MARK, str(tmp_path))
    with pytest.raises(BuildError, match="did not load"):
        rerun_compiled(["-c", "pass"], cache=tmp_path)


def test_a_missing_compiler_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(BuildError, match="needs a C compiler"):
        build(tmp_path)
