"""The agent daemon against a real testbed: one test per fault.

The agent runs as a real process in the testbed's namespace and connects
by host name through Knot DNS to mosquitto with mutual TLS. We wait on
events (messages seen by an observer, status from the control socket) with
generous limits and never assert on durations: those live in bench/.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from iotdr.cli.agent_runner import AgentError, AgentRunner
from iotdr.testbed.observer import Observer
from iotdr.testbed.testbed import Testbed as TwoRegions

pytestmark = pytest.mark.testbed

# Short windows keep the suite quick; the benchmark runs the defaults.
FAST_FAILBACK = {"failback": {"probe_interval_s": 1.0, "stability_window_s": 3.0}}
TOPIC = "iotdr/iotdr-device-1/heartbeat"


def heartbeat_seen(observer: Observer, timeout: float = 20.0) -> bool:
    observer.clear()
    return observer.wait_for(lambda ms: any(m.topic == TOPIC for m in ms), timeout)


def observe(testbed: TwoRegions, region: str) -> Observer:
    observer = Observer(testbed.info, region, [TOPIC]).start()
    assert observer.wait_connected(20.0)
    return observer


def started(
    testbed: TwoRegions, overrides: dict[str, Any] | None = None, **kwargs: Any
) -> AgentRunner:
    agent = AgentRunner(testbed, overrides=overrides, **kwargs).start()
    agent.wait_connected("region-a")
    return agent


def test_region_killed_fails_over_and_publishes_on_secondary(testbed: TwoRegions) -> None:
    secondary = observe(testbed, "secondary")
    with started(testbed) as agent:
        testbed.kill_region("primary")
        status = agent.wait_connected("region-b")
        assert status["role"] == "secondary" and status["failovers"] == 1
        assert heartbeat_seen(secondary)
    secondary.stop()


def test_region_blackholed_fails_over(testbed: TwoRegions) -> None:
    secondary = observe(testbed, "secondary")
    with started(testbed) as agent:
        testbed.blackhole("primary")
        status = agent.wait_connected("region-b", timeout=40.0)
        assert "timeout" in agent.log_text()
        assert status["failovers"] == 1
        assert heartbeat_seen(secondary)
    secondary.stop()


def test_cname_moved_is_followed_and_not_probed_back(testbed: TwoRegions) -> None:
    with started(testbed, FAST_FAILBACK) as agent:
        testbed.set_cname(testbed.info.secondary.host)
        status = agent.wait_connected("region-b")
        assert status["last_dns"]["target"] == testbed.info.secondary.host
        assert status["preferred"].startswith(testbed.info.secondary.host)
        # DNS names region-b now: the agent stays (no failback to region-a).
        testbed.set_cname(testbed.info.primary.host)
        agent.wait_connected("region-a")
        assert agent.status()["failbacks"] == 0  # type: ignore[index]


@pytest.mark.parametrize("mode", ["timeout", "servfail", "nxdomain", "refused"])
def test_dns_failure_never_drops_the_connection(testbed: TwoRegions, mode: str) -> None:
    primary = observe(testbed, "primary")
    with started(testbed, {"dns": {"timeout_s": 1.0, "retry_s": 0.5}}) as agent:
        testbed.dns_fail(mode)
        status = agent.wait_for(lambda s: s["dns_failures"] >= 2, 30.0, "two DNS failures")
        assert status["connected"] and status["region"] == "region-a"
        assert status["failovers"] == 0
        assert heartbeat_seen(primary)
        testbed.dns_heal()
        before = status["last_dns"]["at"]
        healed = agent.wait_for(lambda s: s["last_dns"]["at"] > before, 30.0, "a fresh answer")
        assert healed["connected"] and healed["failovers"] == 0
    primary.stop()


def test_garbage_txt_is_ignored_without_disconnect(testbed: TwoRegions) -> None:
    with started(testbed) as agent:
        testbed.set_txt("{not json")
        status = agent.wait_for(lambda s: "TXT" in (s["last_error"] or ""), 30.0, "TXT error")
        assert status["connected"] and status["region"] == "region-a"
        assert status["role"] == "primary"  # roles kept from the last good TXT


def test_cname_outside_allowlist_is_refused(testbed: TwoRegions) -> None:
    with started(testbed) as agent:
        testbed.set_cname("a1b2c3d4e5f6g7-ats.iot.region-x.attacker.example")
        status = agent.wait_for(lambda s: s["dns_rejected"] >= 1, 30.0, "a refused answer")
        assert status["connected"] and status["region"] == "region-a"
        assert "allowlist" in (status["last_error"] or "")
        assert status["failovers"] == 0


def test_tls_failure_on_primary_falls_over_to_secondary(testbed: TwoRegions) -> None:
    testbed.set_tls_bad("primary", True)
    with AgentRunner(testbed).start() as agent:
        agent.wait_connected("region-b", timeout=40.0)


def test_auth_rejection_on_primary_falls_over_to_secondary(testbed: TwoRegions) -> None:
    testbed.set_auth_reject("primary", True)
    with AgentRunner(testbed).start() as agent:
        agent.wait_connected("region-b")
        assert "failed: auth" in agent.log_text()


def test_jitr_hangup_on_secondary_during_failover(testbed: TwoRegions) -> None:
    testbed.set_jitr("secondary", True, delay_s=3.0)
    secondary = observe(testbed, "secondary")
    with started(testbed) as agent:
        testbed.kill_region("primary")
        status = agent.wait_connected("region-b", timeout=40.0)
        log = agent.log_text()
        assert "just-in-time registration" in log
        after_jitr = log[log.index("just-in-time registration") :]
        # Retried the registering region; never declared it dead and went back.
        assert "region-a" not in after_jitr.split("connected to")[0].replace("[region-a", "")
        assert status["failovers"] == 1
        assert heartbeat_seen(secondary)
    secondary.stop()


@pytest.mark.parametrize("depth", ["tcp", "tls", "mqtt"])
def test_failback_after_recovery(testbed: TwoRegions, depth: str) -> None:
    primary = observe(testbed, "primary")
    overrides = {"failback": {**FAST_FAILBACK["failback"], "probe_depth": depth}}
    with started(testbed, overrides) as agent:
        testbed.kill_region("primary")
        agent.wait_connected("region-b")
        testbed.restore_region("primary")
        status = agent.wait_connected("region-a", timeout=40.0)
        assert status["failbacks"] == 1 and status["failovers"] == 2
        assert primary.wait_connected(20.0)
        assert heartbeat_seen(primary)
    primary.stop()


def test_failback_disabled_stays_on_secondary(testbed: TwoRegions) -> None:
    overrides = {"failback": {"enabled": False, "probe_interval_s": 0.5, "stability_window_s": 1.0}}
    secondary = observe(testbed, "secondary")
    with started(testbed, overrides) as agent:
        testbed.kill_region("primary")
        agent.wait_connected("region-b")
        testbed.restore_region("primary")
        # Far longer than probe interval + window: a failback would be done.
        assert secondary.wait_for(lambda ms: sum(m.topic == TOPIC for m in ms) >= 8, 30.0)
        status = agent.status()
        assert status is not None and status["region"] == "region-b"
        assert status["failbacks"] == 0
    secondary.stop()


def test_flapping_primary_does_not_make_the_agent_flap(testbed: TwoRegions) -> None:
    with started(testbed, FAST_FAILBACK) as agent:
        testbed.kill_region("primary")
        agent.wait_connected("region-b")
        for _ in range(8):  # up one second, down the next: a fault schedule
            testbed.restore_region("primary")
            time.sleep(1.0)
            testbed.kill_region("primary")
            time.sleep(1.0)
        status = agent.status()
        assert status is not None
        assert status["failbacks"] == 0 and status["region"] == "region-b"
        testbed.restore_region("primary")
        agent.wait_connected("region-a", timeout=40.0)


def _threads_and_fds(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:"))
    )
    return threads, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_reconnects_leak_no_threads_or_sockets(testbed: TwoRegions) -> None:
    """One event loop group serves every connection: moving the connection
    back and forth leaves thread and descriptor counts where they were."""
    with started(testbed, {"dns": {"max_ttl_s": 1.0}}) as agent:
        assert agent.process is not None
        agent.wait_for(lambda s: s["last_dns"] is not None, 20.0, "a DNS answer")
        hosts = {"region-a": testbed.info.primary.host, "region-b": testbed.info.secondary.host}

        def move(times: int) -> None:
            for i in range(times):
                region = "region-b" if i % 2 == 0 else "region-a"
                testbed.set_cname(hosts[region])
                agent.wait_connected(region)

        # The CRT's host resolver keeps a thread per host name it has seen:
        # count after both hosts were used, so only per-connection leaks show.
        move(2)
        before = _threads_and_fds(agent.process.pid)
        move(10)
        status = agent.wait_connected("region-a")
        assert status["failovers"] == 12
        threads, fds = _threads_and_fds(agent.process.pid)
        assert threads == before[0]
        assert fds <= before[1] + 2  # a DNS or probe socket may be open right now


def test_sighup_with_broken_config_keeps_running(testbed: TwoRegions) -> None:
    with started(testbed) as agent:
        good = agent.config_path.read_text()
        agent.config_path.write_text(good + "failback: {probe_depth: icmp}\n")
        agent.signal(signal.SIGHUP)
        assert _wait_log(agent, "configuration NOT changed")
        assert "failback.probe_depth" in agent.log_text()
        status = agent.wait_connected("region-a")
        assert status["failovers"] == 0
        # A valid change then applies, without reconnecting.
        agent.config_path.write_text(good + "failback: {stability_window_s: 42}\n")
        agent.signal(signal.SIGHUP)
        status = agent.wait_for(lambda s: s["stability_window_s"] == 42, 20.0, "reload")
        assert status["connected"] and status["failovers"] == 0


def test_sigterm_stops_cleanly_and_notifies_systemd(testbed: TwoRegions, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30.0)
        agent = started(testbed, env={"NOTIFY_SOCKET": str(notify_path)})
        messages = [notify.recv(4096).decode()]
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o600
        agent.signal(signal.SIGTERM)
        assert agent.process is not None
        assert agent.process.wait(30.0) == 0
        notify.settimeout(1.0)
        try:
            while True:
                messages.append(notify.recv(4096).decode())
        except TimeoutError:
            pass
    assert any("STOPPING=1" in m for m in messages)
    assert not Path(agent.socket).exists()
    assert "stopped" in agent.log_text()


def _wait_log(agent: AgentRunner, text: str, timeout: float = 20.0) -> bool:
    try:
        agent.wait_for(lambda s: text in agent.log_text(), timeout, repr(text))
    except AgentError:
        return False
    return True
