"""Resource faults and hostile input against the real testbed (issue 12):
a full disk that drains, a read-only state directory, an alias bomb sent
by SIGHUP, bad TXT answers, a CNAME that flaps or leads nowhere. No
durations are asserted."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotdr.cli.agent_runner import AgentError, AgentRunner, deep_merge
from iotdr.testbed.netns import inside
from iotdr.testbed.observer import Observer
from iotdr.testbed.operator import region_client
from iotdr.testbed.publisher import LocalPublisher
from iotdr.testbed.testbed import Testbed as TwoRegions
from tests.integration.test_bridge import BRIDGE, TOPICS, wait_delivered
from tests.small_disk import read_only, small_disk

pytestmark = pytest.mark.testbed
HEARTBEAT = "iotdr/iotdr-device-1/heartbeat"


def _wait_log(agent: AgentRunner, text: str, timeout: float = 30.0) -> bool:
    try:
        agent.wait_for(lambda s: text in agent.log_text(), timeout, repr(text))
    except AgentError:
        return False
    return True


def test_full_disk_spool_drains_once_the_region_acknowledges(testbed: TwoRegions) -> None:
    """The spool fills its own 2 MiB file system while both regions are
    down; once one is back every message arrives, the spool empties, and a
    restart sends nothing that was already acknowledged."""
    observers = {r: Observer(testbed.info, r, ["dt/#"]).start() for r in ("primary", "secondary")}
    for observer in observers.values():
        assert observer.wait_connected(20.0)
    disk_dir = testbed.info.agent_config.parent / "small-disk"
    try:
        with small_disk(disk_dir, 2048) as disk:
            overrides = deep_merge(
                BRIDGE, {"bridge": {"spool": {"path": str(disk / "spool.sqlite")}}}
            )
            agent = AgentRunner(testbed, overrides=overrides).start()
            publisher = LocalPublisher(testbed.info, pad=1000).start()
            try:
                agent.wait_connected("region-a")
                testbed.kill_region("primary")
                testbed.kill_region("secondary")
                agent.wait_for(lambda s: not s["connected"], 20.0, "no region")
                publisher.publish_many(TOPICS, 1500)  # 3,000 x 1 KB: more than the disk holds
                agent.wait_for(lambda s: s["bridge"]["spool"]["disk_full"], 60.0, "disk full")
                testbed.restore_region("primary")
                assert publisher.wait_handed_over(3000, 180.0)
                missing = wait_delivered(publisher.expected(), observers, 180.0)
                assert not missing, f"{len(missing)} lost"
                status = agent.wait_for(
                    lambda s: (
                        s["bridge"]["spool"]["depth"] == 0 and not s["bridge"]["spool"]["disk_full"]
                    ),
                    60.0,
                    "drained",
                )
                assert status["bridge"]["acknowledged"] >= 3000
            finally:
                publisher.stop()
                agent.stop()
            again = AgentRunner(testbed, name="again", overrides=overrides).start()
            try:
                status = again.wait_connected("region-a")
                status = again.wait_for(lambda s: "bridge" in s, 20.0, "bridge status")
                assert status["bridge"]["spool"]["depth"] == 0
                assert status["bridge"]["forwarded"] == 0  # nothing acknowledged is resent
            finally:
                again.stop()
    finally:
        for observer in observers.values():
            observer.stop()


def test_read_only_state_dir_is_a_clear_error_not_a_hang(testbed: TwoRegions) -> None:
    state = testbed.info.agent_config.parent / "ro-state"
    with read_only(state):
        agent = AgentRunner(
            testbed, overrides={"state_dir": str(state), "bridge": {"enabled": True}}
        ).start()
        assert agent.process is not None
        assert agent.process.wait(60) == 2  # a bound, not a timing assertion
        lines = [line for line in agent.log_text().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "state_dir" in lines[0] and "not writable" in lines[0]


def test_alias_bomb_by_sighup_is_refused_and_the_agent_answers(testbed: TwoRegions) -> None:
    bomb = "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with AgentRunner(testbed).start() as agent:
        agent.wait_connected("region-a")
        good = agent.config_path.read_text()
        agent.config_path.write_text(good + 'a: &a ["lol", "lol"]\n' + bomb)
        agent.signal(signal.SIGHUP)
        assert _wait_log(agent, "configuration NOT changed")
        assert "aliases" in agent.log_text()
        status = agent.wait_connected("region-a")
        assert status["failovers"] == 0
        assert "Traceback" not in agent.log_text()


def test_dead_cname_target_never_takes_the_agent_offline(testbed: TwoRegions) -> None:
    """Issue 12 item 6: the CNAME points at a host inside the allowlist
    that does not resolve; the working connection stays, heartbeats flow."""
    primary = Observer(testbed.info, "primary", [HEARTBEAT]).start()
    assert primary.wait_connected(20.0)
    with AgentRunner(testbed, overrides={"failback": {"probe_interval_s": 1.0}}).start() as agent:
        agent.wait_connected("region-a")
        dead = f"a1b2c3d4e5f6g7-ats.iot.region-z.{testbed.info.dns.zone}"
        testbed.set_cname(dead, ttl=1)
        status = agent.wait_for(
            lambda s: "does not answer" in (s["last_error"] or ""), 30.0, "dead target reported"
        )
        assert status["connected"] and status["region"] == "region-a"
        primary.clear()
        assert primary.wait_for(lambda ms: any(m.topic == HEARTBEAT for m in ms), 20.0)
        status = agent.wait_connected("region-a")
        assert status["failovers"] == 0
        assert "DNS moved" in agent.log_text() and "lost" not in agent.log_text()
        # DNS points at a real region again: followed.
        testbed.set_cname(testbed.info.secondary.host)
        agent.wait_connected("region-b")
    primary.stop()


def test_flapping_cname_does_not_make_the_agent_flap(testbed: TwoRegions) -> None:
    """Issue 12 item 5: a CNAME flipping between the regions every second
    (TTL 1) for 20 s: the agent follows a move or two, not every flip."""
    hosts = [testbed.info.secondary.host, testbed.info.primary.host]
    with AgentRunner(testbed, overrides={"dns": {"min_ttl_s": 1.0}}).start() as agent:
        agent.wait_connected("region-a")
        for flip in range(20):
            testbed.set_cname(hosts[flip % 2], ttl=1)
            time.sleep(1.0)  # pacing the fault, not measuring anything
        status = agent.wait_for(lambda s: s["connected"], 30.0, "connected")
        assert status["failovers"] <= 3, status
        assert "keeps changing" in agent.log_text()


def test_refused_txt_is_counted_and_a_good_one_clears_the_error(testbed: TwoRegions) -> None:
    """Issue 12 item 9."""
    with AgentRunner(testbed).start() as agent:
        agent.wait_connected("region-a")
        good = '{"primary": "region-a", "secondary": "region-b"}'
        testbed.set_txt("{not json")
        status = agent.wait_for(lambda s: s["dns_rejected"] >= 1, 30.0, "counted")
        assert status["connected"] and "TXT" in (status["last_error"] or "")
        testbed.set_txt('{"primary": "region-q", "secondary": "region-r"}')
        agent.wait_for(lambda s: s["dns_rejected"] >= 2, 30.0, "unknown regions counted")
        testbed.set_txt(good)
        status = agent.wait_for(lambda s: s["last_error"] is None, 30.0, "error cleared")
        assert status["connected"] and status["failovers"] == 0


def test_failover_counters_survive_a_restart(testbed: TwoRegions) -> None:
    with AgentRunner(testbed).start() as agent:
        agent.wait_connected("region-a")
        testbed.kill_region("primary")
        status = agent.wait_connected("region-b")
        assert status["failovers"] == 1
    with AgentRunner(testbed, name="again").start() as again:
        status = again.wait_connected("region-b")
        assert status["failovers"] >= 1


def test_commands_sent_while_the_agent_is_away_wait_for_it(testbed: TwoRegions) -> None:
    """Issue 12 (smaller list): with `connection.session_expiry_s` set,
    cloud -> device commands published while the device's connection is
    down (here: the agent restarting, a reconnect to the same region) are
    kept by its persistent session and delivered."""
    received: list[bytes] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            received.append(bytes(message.payload))

    with inside(testbed.info.netns):
        local = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-app")
        local.on_message = on_message
        local.connect(testbed.info.local.host, testbed.info.local.port)
        local.subscribe("commands/#", qos=1)
        local.loop_start()
    cloud = region_client(testbed.info, "primary")
    persistent = deep_merge(BRIDGE, {"connection": {"session_expiry_s": 3600}})
    try:
        agent = AgentRunner(testbed, overrides=persistent).start()
        agent.wait_connected("region-a")
        # The agent's subscription is in place once a command gets through.
        deadline = time.monotonic() + 30
        while b"ready" not in received and time.monotonic() < deadline:
            cloud.publish("cmd/iotdr-device-1/ping", b"ready", qos=1).wait_for_publish(10)
            time.sleep(0.5)
        assert b"ready" in received
        agent.stop()
        sent = [f"away-{n}".encode() for n in range(10)]
        for payload in sent:
            cloud.publish("cmd/iotdr-device-1/do", payload, qos=1).wait_for_publish(10)
        again = AgentRunner(testbed, name="again", overrides=persistent).start()
        try:
            again.wait_connected("region-a")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if set(sent) <= set(received):
                        break
                time.sleep(0.2)
            with lock:
                lost = [p for p in sent if p not in received]
            assert not lost, f"{len(lost)} of {len(sent)} commands lost"
        finally:
            again.stop()
    finally:
        cloud.loop_stop()
        cloud.disconnect()
        local.loop_stop()
        local.disconnect()
