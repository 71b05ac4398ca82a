"""Scenario files: the examples load, and every mistake is one line naming
the file and the dotted key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iotdr.agent.core.errors import ConfigError
from iotdr.simulator.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "scenarios").glob("*.yaml"))

GOOD = """
duration_s: 30
fleet: {devices: 10}
timeline:
  - {at_s: 5, fault: kill, region: primary}
"""


def test_there_is_an_example_for_each_kind_of_failure() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"region-hard-down", "region-blackhole", "cname-moved", "flapping-primary"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.fleet.devices >= 1
    assert scenario.timeline
    assert all(f.at_s <= scenario.duration_s for f in scenario.timeline)


def test_defaults_are_the_agents() -> None:
    scenario = parse_scenario(GOOD, "s.yaml")
    assert scenario.fleet.client_ids(3) == ["iotdr-sim-00000", "iotdr-sim-00001", "iotdr-sim-00002"]
    assert scenario.limits is not None and scenario.limits.account_connects_per_s == 500
    assert scenario.criteria.lost_max == 0


def test_rates_may_exceed_the_longest_duration() -> None:
    # A raised account quota (the million-device bench uses 100,000/s) is a
    # rate, not a number of seconds capped at a day.
    text = GOOD + "limits: {account_connects_per_s: 100000}\n"
    scenario = parse_scenario(
        text.replace("devices: 10", "devices: 10, connect_rate_per_s: 100000"), "s.yaml"
    )
    assert scenario.fleet.connect_rate_per_s == 100_000
    assert scenario.limits is not None and scenario.limits.account_connects_per_s == 100_000


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("fleet: {devices: 10}", "duration_s", "is required"),
        ("duration_s: 10", "fleet.devices", "is required"),
        ("duration_s: 10\nfleet: {devices: 0}", "fleet.devices", "between"),
        ("duration_s: .nan\nfleet: {devices: 1}", "duration_s", "finite"),
        ("duration_s: .inf\nfleet: {devices: 1}", "duration_s", "finite"),
        ("duration_s: 10\nfleet: {devices: 1, client_id: fixed}", "fleet.client_id", "{index}"),
        ("duration_s: 10\nfleet: {devices: 1, colour: red}", "fleet.colour", "not a known"),
        (
            "duration_s: 10\nfleet: {devices: 1}\ntimeline: [{at_s: 1, fault: explode}]",
            "timeline[0].fault",
            "must be one of",
        ),
        (
            "duration_s: 10\nfleet: {devices: 1}\ntimeline: [{at_s: 1, fault: kill}]",
            "timeline[0].region",
            "must be one of",
        ),
        (
            "duration_s: 10\nfleet: {devices: 1}\ntimeline: [{at_s: 99, fault: kill, "
            "region: primary}]",
            "timeline[0].at_s",
            "after the end",
        ),
        (
            "duration_s: 10\nfleet: {devices: 1}\ntimeline: [{at_s: 5, fault: heal, "
            "region: primary}, {at_s: 1, fault: kill, region: primary}]",
            "timeline",
            "in order",
        ),
        (
            "duration_s: 10\nfleet: {devices: 1}\nagent: {connection: {connect_spread_s: x}}",
            "agent.connection.connect_spread_s",
            "must be a number",
        ),
        ("duration_s: 10\nfleet: {devices: 1}\nagent: {client_id: me}", "agent.client_id", "per"),
        (
            "duration_s: 10\nfleet: {devices: 1}\ncriteria: {recovered_min: 2}",
            "criteria.recovered_min",
            "fraction",
        ),
        (
            "duration_s: 10\nfleet: {devices: 1}\nlimits: {refuse: politely}",
            "limits.refuse",
            "must be one of",
        ),
        ("- a list", "(top level)", "mapping"),
        ("duration_s: [", "line 1, column 14", "YAML syntax error"),
    ],
)
def test_mistakes_name_the_file_and_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_scenario(text, "broken.yaml")
    assert raised.value.source == "broken.yaml"
    assert raised.value.key == key
    assert problem in raised.value.problem


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_scenario(path)


@pytest.mark.parametrize(
    "content",
    [
        b"duration_s: 10\nfleet: {devices: 1}\ntimeline: [{at_s: 1, fault: explode}]\n",
        b"\x00\x01\x02 not yaml at all \xff",
        b"fleet: {devices: -5}\n",
    ],
)
def test_the_cli_says_one_line_and_exits_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_bytes(content)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotdr.cli.main",
            "simulate",
            "run",
            str(path),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0]
    assert "Traceback" not in done.stderr
