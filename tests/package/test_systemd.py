"""The Debian package under a real systemd, as a gateway operator meets it.

A minimal bookworm boots with systemd as PID 1 (systemd-nspawn) inside a
testbed's network namespace, so the agent reaches the testbed's regions and
DNS exactly as a gateway reaches AWS IoT. One test walks the package's life
in order: install, no start without a configuration, a configuration error
that does not loop, start (active only after READY=1), reload good and
broken, the watchdog restarting a frozen agent, an upgrade over the running
agent, a clean stop, remove, purge.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotdr.testbed.testbed import Testbed
from tests.package.container import Container

UNIT = "iotdr-agent.service"
# Short for the test; the shipped unit says 20 s.
WATCHDOG_DROP_IN = "[Service]\nWatchdogSec=3s\nTimeoutAbortSec=5s\n"


def _next_version(deb: Path, directory: Path) -> Path:
    """The same package as a later version (`VERSION+upgrade`): what an
    upgrade installs over a running agent (dpkg-deb, as Debian's tools do)."""
    tree = directory / "tree"
    subprocess.run(["dpkg-deb", "--raw-extract", deb, tree], check=True, timeout=120)
    control = tree / "DEBIAN/control"
    lines = control.read_text().splitlines()
    version = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Version:"))
    control.write_text(
        "\n".join(
            f"Version: {version}+upgrade" if line.startswith("Version:") else line for line in lines
        )
        + "\n"
    )
    upgraded = directory / f"iotdr-agent_{version}+upgrade.deb"
    # gzip -1: the test only installs it; xz would take most of a minute.
    build = ["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(tree), str(upgraded)]
    subprocess.run(build, check=True, timeout=300, capture_output=True)
    return upgraded


@pytest.fixture
def container(deb: Path, debian_root: Path, tmp_path: Path) -> Iterator[Container]:
    upgrade = tmp_path / "upgrade"
    upgrade.mkdir()
    _next_version(deb, upgrade)
    with Testbed.up(tmp_path / "tb") as testbed:
        binds = {deb.parent: "/mnt/dist", upgrade: "/mnt/upgrade"}
        booted = Container(debian_root, testbed, binds, tmp_path / "container.log")
        try:
            yield booted
        finally:
            booted.poweroff()


def _wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _status(box: Container) -> dict[str, Any] | None:
    done = box.run(["iotdr-agent", "status", "--json"], check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _connected_to(box: Container, region: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = _wait(
            f"connected to {region}",
            lambda: (s := _status(box)) and s["connected"] and s["region"] == region and s,
        )
    except AssertionError as exc:
        answer = box.run(["iotdr-agent", "status", "--json"], check=False)
        raise AssertionError(f"{exc}\n{answer.stderr}\n{box.journal(UNIT)[-2000:]}") from None
    return status


def _agent_config(testbed_dir: Path) -> dict[str, Any]:
    """The testbed's agent.yaml, with the files where an operator puts them
    and the package's vendor defaults for the socket and state."""
    config: dict[str, Any] = yaml.safe_load((testbed_dir / "agent.yaml").read_text())
    config["tls"] = {
        "ca_file": "/etc/iotdr/ca.pem",
        "cert_file": "/etc/iotdr/device.pem",
        "key_file": "/etc/iotdr/device.key",
    }
    del config["control_socket"], config["state_dir"]
    return config


@pytest.mark.testbed
@pytest.mark.timeout(1200)  # a first run debootstraps the root (75 s here, network bound)
def test_install_run_reload_watchdog_remove_purge(container: Container) -> None:
    box = container
    testbed_dir = box.testbed_dir
    tls = yaml.safe_load((testbed_dir / "agent.yaml").read_text())["tls"]

    # Install: the user, the directories and their modes, nothing started.
    box.run(["sh", "-ec", "DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/dist/*.deb"])
    box.run(["getent", "passwd", "iotdr"])
    assert box.run(["stat", "-c", "%a %U:%G", "/etc/iotdr"]).stdout.split() == ["750", "root:iotdr"]
    assert box.run(["dpkg-query", "-W", "-f=${Conffiles}", "iotdr-agent"]).stdout.strip()
    assert box.show(UNIT, "ActiveState")["ActiveState"] == "inactive"

    # No configuration yet: a start is skipped, not failed, and never loops.
    box.run(["systemctl", "start", UNIT])
    state = box.show(UNIT, "ActiveState", "ConditionResult", "NRestarts")
    assert state == {"ActiveState": "inactive", "ConditionResult": "no", "NRestarts": "0"}

    # The operator's files; first with a private key open to everyone.
    box.write("/etc/iotdr/ca.pem", Path(tls["ca_file"]).read_bytes(), 0o644, "iotdr")
    box.write("/etc/iotdr/device.pem", Path(tls["cert_file"]).read_bytes(), 0o644, "iotdr")
    box.write("/etc/iotdr/device.key", Path(tls["key_file"]).read_bytes(), 0o644, "iotdr")
    config = _agent_config(testbed_dir)
    good = yaml.safe_dump(config).encode()
    box.write("/etc/iotdr/agent.yaml", good, 0o640, "iotdr")
    box.run(["mkdir", "-p", f"/run/systemd/system/{UNIT}.d"])
    box.write(f"/run/systemd/system/{UNIT}.d/test.conf", WATCHDOG_DROP_IN.encode(), 0o644)
    box.run(["systemctl", "daemon-reload"])

    # A configuration error (exit 2) fails the start once, with the fix.
    assert box.run(["systemctl", "start", UNIT], check=False).returncode != 0
    state = box.show(UNIT, "ActiveState", "ExecMainStatus", "NRestarts")
    assert state == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}
    errors = box.journal(UNIT, "--priority=err")
    assert "tls.key_file" in errors and "chmod o-rwx /etc/iotdr/device.key" in errors
    box.run(["chmod", "0640", "/etc/iotdr/device.key"])
    box.run(["systemctl", "reset-failed", UNIT])

    # Type=notify: `enable --now` returns once the agent sent READY=1.
    box.run(["systemctl", "enable", "--now", UNIT])
    started = box.show(UNIT, "ActiveState", "SubState", "MainPID", "StatusText")
    assert started["ActiveState"] == "active" and started["SubState"] == "running"
    assert started["StatusText"]  # STATUS= from the agent
    main_pid = started["MainPID"]
    _connected_to(box, "region-a")

    # Metrics for node_exporter, written by the package's sandboxed oneshot.
    box.run(["mkdir", "-p", "/var/lib/prometheus/node-exporter"])
    box.run(["systemctl", "start", "iotdr-agent-metrics.service"])
    metrics = box.run(["cat", "/var/lib/prometheus/node-exporter/iotdr.prom"]).stdout
    assert "iotdr_agent_up 1" in metrics and "iotdr_agent_connected 1" in metrics
    box.run(["systemctl", "enable", "--now", "iotdr-agent-metrics.timer"])

    # Reload, good: applied in place, same process, still connected.
    config["failback"] = {"stability_window_s": 42}
    box.write("/etc/iotdr/agent.yaml", yaml.safe_dump(config).encode(), 0o640, "iotdr")
    box.run(["systemctl", "reload", UNIT])
    _wait("the reload applied", lambda: (s := _status(box)) and s["stability_window_s"] == 42)
    assert box.show(UNIT, "MainPID", "ActiveState") == {
        "MainPID": main_pid,
        "ActiveState": "active",
    }

    # Reload, broken: `systemctl reload` fails and says why; the agent runs on.
    config["failback"] = {"probe_depth": "icmp"}
    box.write("/etc/iotdr/agent.yaml", yaml.safe_dump(config).encode(), 0o640, "iotdr")
    assert box.run(["systemctl", "reload", UNIT], check=False).returncode != 0
    assert box.show(UNIT, "MainPID", "ActiveState") == {
        "MainPID": main_pid,
        "ActiveState": "active",
    }
    errors = box.journal(UNIT, "--priority=err")
    assert "configuration NOT changed" in errors and "failback.probe_depth" in errors
    # `status` still reaches the agent (on the default socket) and says why.
    asked = box.run(["iotdr-agent", "status", "--json"], check=False)
    assert asked.returncode == 0 and json.loads(asked.stdout)["stability_window_s"] == 42
    assert "failback.probe_depth" in asked.stderr and "/run/iotdr/agent.sock" in asked.stderr
    box.write("/etc/iotdr/agent.yaml", good, 0o640, "iotdr")
    assert _connected_to(box, "region-a")["stability_window_s"] == 42

    # journald: info lines are not errors, and lines carry the region.
    assert "iotdr-agent starting" not in box.journal(UNIT, "--priority=warning")
    assert "reloading" in box.journal(UNIT, "IOTDR_REGION=region-a")

    # The watchdog: a frozen agent (SIGSTOP) is aborted and restarted.
    box.run(["sh", "-c", f"kill -STOP {main_pid}"])  # dash's kill: no procps in the image
    restarted = _wait(
        "a restart by the watchdog",
        lambda: (
            (s := box.show(UNIT, "MainPID", "NRestarts", "ActiveState"))["NRestarts"] == "1"
            and s["ActiveState"] == "active"
            and s
        ),
    )
    assert restarted["MainPID"] != main_pid
    assert "Failed with result 'watchdog'" in box.journal(UNIT)
    _connected_to(box, "region-a")

    # An upgrade over the running agent: postinst's try-restart runs the new
    # code; the operator's configuration and the enablement stay.
    before = box.show(UNIT, "MainPID")["MainPID"]
    box.run(["sh", "-ec", "DEBIAN_FRONTEND=noninteractive apt-get install -y /mnt/upgrade/*.deb"])
    version = box.run(["dpkg-query", "-W", "-f=${Version}", "iotdr-agent"]).stdout
    assert version.endswith("+upgrade")
    upgraded = box.show(UNIT, "MainPID", "ActiveState", "UnitFileState")
    assert upgraded["MainPID"] != before and upgraded["ActiveState"] == "active"
    assert upgraded["UnitFileState"] == "enabled"
    assert box.run(["cat", "/etc/iotdr/agent.yaml"]).stdout.encode() == good
    _connected_to(box, "region-a")

    # A clean stop: exit 0, STOPPING=1, the control socket gone.
    box.run(["systemctl", "stop", UNIT])
    stopped = box.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert "stopped" in box.journal(UNIT).splitlines()  # the agent's last line

    # Remove keeps the operator's configuration; purge takes everything.
    box.run(["sh", "-ec", "DEBIAN_FRONTEND=noninteractive apt-get remove -y iotdr-agent"])
    assert box.run(["test", "-e", "/usr/lib/iotdr"], check=False).returncode != 0
    assert box.run(["test", "-f", "/etc/iotdr/agent.yaml"], check=False).returncode == 0
    wants = "/etc/systemd/system/multi-user.target.wants/iotdr-agent.service"
    assert box.run(["test", "-L", wants], check=False).returncode != 0
    box.run(["sh", "-ec", "DEBIAN_FRONTEND=noninteractive apt-get purge -y iotdr-agent"])
    for path in (
        "/etc/iotdr",
        "/var/lib/iotdr",
        "/lib/systemd/system/iotdr-agent.service",
        "/var/lib/prometheus/node-exporter/iotdr.prom",
        "/etc/systemd/system/timers.target.wants/iotdr-agent-metrics.timer",
    ):
        assert box.run(["test", "-e", path], check=False).returncode != 0, path
    assert box.run(["dpkg-query", "-W", "iotdr-agent"], check=False).returncode != 0


@pytest.mark.parametrize("unit", ["iotdr-agent.service", "iotdr-agent-metrics.service"])
def test_unit_exposure_is_at_most_2(unit: str) -> None:
    """`systemd-analyze security` scores the shipped units 2.0 or better."""
    path = Path(__file__).resolve().parents[2] / "packaging" / unit
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", path],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
