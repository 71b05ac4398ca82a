"""A plain `pip install iotdr` (no extras) is what a gateway has: the agent
must not need the cloud or testbed extras, and `iotdr` must say which extra
a command needs instead of failing with a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Modules a plain install lacks, hidden the way a missing package is.
_HIDE = (
    "import sys\n"
    "for m in ('boto3', 'botocore', 'cryptography', 'dns', 'systemd', 'matplotlib', 'rich'):\n"
    "    sys.modules[m] = None\n"
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _HIDE + code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_agent_imports_no_extra() -> None:
    done = _run(
        "import iotdr.agent.main, iotdr.agent.daemon, iotdr.agent.bridge\n"
        "loaded = [m for m in ('boto3', 'cryptography', 'dns', 'systemd') if sys.modules.get(m)]\n"
        "assert not loaded, loaded\n"
        "raise SystemExit(iotdr.agent.main.main(['--help']))"
    )
    assert done.returncode == 0, done.stderr
    assert "check-config" in done.stdout


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["cloud", "sync", "region-to-region"], "cloud"),
        (["testbed", "up"], "testbed"),
        (["demo"], "testbed"),
        (["simulate", "run", "x.yaml"], "simulator"),
    ],
)
def test_a_command_without_its_extra_says_what_to_install(argv: list[str], extra: str) -> None:
    done = _run(f"from iotdr.cli.main import main\nraise SystemExit(main({argv!r}))")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line, no traceback"
    assert f"pip install 'iotdr[{extra}]'" in done.stderr
