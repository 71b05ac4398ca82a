"""The gateway bridge against the real testbed: nothing a local publisher
handed over is lost through failover, failback, an agent crash, a local
broker restart or a full spool.

Observers subscribe in both regions; a message counts as delivered when
either region's observer saw it. Per topic and per region, the first
sightings of sequence numbers must rise (order holds apart from
duplicates).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotdr.cli.agent_runner import AgentRunner, deep_merge
from iotdr.testbed.netns import inside
from iotdr.testbed.observer import Observer
from iotdr.testbed.operator import region_client
from iotdr.testbed.publisher import LocalPublisher
from iotdr.testbed.testbed import Testbed as TwoRegions
from tests.small_disk import fill, small_disk

pytestmark = pytest.mark.testbed

TOPICS = ["sensors/temperature", "sensors/pressure"]
BRIDGE: dict[str, Any] = {
    "bridge": {
        "enabled": True,
        "to_cloud": [{"filter": "sensors/#", "add_prefix": "dt/gw1/"}],
        "from_cloud": [
            {
                "filter": "cmd/iotdr-device-1/#",
                "strip_prefix": "cmd/iotdr-device-1/",
                "add_prefix": "commands/",
            }
        ],
    },
    "failback": {"probe_interval_s": 1.0, "stability_window_s": 2.0},
    "dns": {"max_ttl_s": 1.0},
    "heartbeat": {"topic": None},
}


@contextmanager
def gateway(
    testbed: TwoRegions,
    overrides: dict[str, Any] | None = None,
) -> Iterator[tuple[AgentRunner, dict[str, Observer], LocalPublisher]]:
    observers = {r: Observer(testbed.info, r, ["dt/#"]).start() for r in ("primary", "secondary")}
    for observer in observers.values():
        assert observer.wait_connected(20.0)
    agent = AgentRunner(testbed, overrides=deep_merge(BRIDGE, overrides or {})).start()
    agent.wait_connected("region-a")
    agent.wait_for(lambda s: "bridge" in s, 20.0, "bridge status")
    publisher = LocalPublisher(testbed.info).start()
    try:
        yield agent, observers, publisher
    finally:
        publisher.stop()
        agent.stop()
        for observer in observers.values():
            observer.stop()


def sightings(observer: Observer) -> list[tuple[str, int]]:
    out = []
    for message in observer.messages:
        data = json.loads(message.payload)
        out.append((data["topic"], int(data["seq"])))
    return out


def wait_delivered(
    expected: list[tuple[str, int]], observers: dict[str, Observer], timeout: float = 90.0
) -> set[tuple[str, int]]:
    want = set(expected)
    deadline = time.monotonic() + timeout
    missing = want
    while time.monotonic() < deadline:
        seen = {s for o in observers.values() for s in sightings(o)}
        missing = want - seen
        if not missing:
            return missing
        time.sleep(0.2)
    return missing


def assert_order(observers: dict[str, Observer]) -> None:
    for region, observer in observers.items():
        first: dict[str, list[int]] = defaultdict(list)
        seen: set[tuple[str, int]] = set()
        for topic, seq in sightings(observer):
            if (topic, seq) not in seen:
                seen.add((topic, seq))
                first[topic].append(seq)
        for topic, seqs in first.items():
            assert seqs == sorted(seqs), f"{region} {topic}: out of order"


def kill_primary_quiet(
    testbed: TwoRegions,
    publisher: LocalPublisher,
    observers: dict[str, Observer],
    gate: threading.Event,
) -> None:
    """SIGKILL the primary with nothing in flight inside it, then publish on.

    A broker killed mid-stream loses messages it has already acknowledged to
    the agent but not yet delivered to subscribers (they die in its memory
    and socket buffers): a property of the region, not of the agent, and the
    same boundary as AWS IoT's PUBACK. So the publisher pauses until the
    observers have everything, the region dies, and publishing resumes at
    once: all that is published during the outage goes through the spool.
    """
    gate.clear()
    time.sleep(0.2)  # let a publish already under way reach the client
    # Everything published must be handed over before "everything handed
    # over was delivered" means nothing is still on its way to the region.
    assert publisher.wait_settled(60.0)
    assert not wait_delivered(publisher.expected(), observers, 60.0)
    testbed.kill_region("primary")
    gate.set()


def test_ten_thousand_messages_survive_every_fault(testbed: TwoRegions) -> None:
    with gateway(testbed) as (agent, observers, publisher):
        count = 5000  # per topic: 10,000 in all
        gate = threading.Event()
        gate.set()
        feeder = threading.Thread(target=publisher.publish_many, args=(TOPICS, count, 500.0, gate))
        feeder.start()
        info = testbed.info
        time.sleep(1.0)
        kill_primary_quiet(testbed, publisher, observers, gate)
        agent.wait_connected("region-b")
        testbed.restore_region("primary")
        agent.wait_connected("region-a")  # failback
        testbed.blackhole("primary")
        agent.wait_connected("region-b", timeout=40.0)
        testbed.heal("primary")
        agent.wait_connected("region-a", timeout=40.0)
        testbed.set_cname(info.secondary.host)
        agent.wait_connected("region-b")
        testbed.set_cname(info.primary.host)
        agent.wait_connected("region-a")
        feeder.join(120.0)
        assert publisher.wait_handed_over(2 * count, 60.0)
        expected = publisher.expected()
        missing = wait_delivered(expected, observers)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
        status = agent.status()
        assert status is not None and status["failovers"] >= 6
        assert_order(observers)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_agent_sigkill_mid_stream_loses_nothing(testbed: TwoRegions, protocol: str) -> None:
    local = {"bridge": {"local_protocol": protocol}}
    with gateway(testbed, local) as (agent, observers, publisher):
        feeder = threading.Thread(target=publisher.publish_many, args=(TOPICS, 1500, 600.0))
        feeder.start()
        time.sleep(1.5)
        agent.kill()  # SIGKILL: no chance to flush anything
        time.sleep(0.5)
        agent.start()
        agent.wait_connected("region-a")
        feeder.join(60.0)
        assert publisher.wait_handed_over(3000, 60.0)
        missing = wait_delivered(publisher.expected(), observers)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
        assert_order(observers)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_local_broker_restart_mid_stream_loses_nothing(testbed: TwoRegions, protocol: str) -> None:
    local = {"bridge": {"local_protocol": protocol}}
    with gateway(testbed, local) as (_agent, observers, publisher):
        feeder = threading.Thread(target=publisher.publish_many, args=(TOPICS, 1500, 600.0))
        feeder.start()
        time.sleep(1.5)
        testbed.restart_local()
        feeder.join(60.0)
        assert publisher.wait_handed_over(3000, 60.0)
        missing = wait_delivered(publisher.expected(), observers)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"


def test_full_spool_applies_backpressure_then_drains(testbed: TwoRegions) -> None:
    small = {"bridge": {"spool": {"max_bytes": 16384}}}
    with gateway(testbed, small) as (agent, observers, publisher):
        testbed.kill_region("primary")
        testbed.kill_region("secondary")
        agent.wait_for(lambda s: not s["connected"], 20.0, "no region")
        publisher.publish_many(TOPICS, 400)  # ~60 bytes each: about 48 KiB
        status = agent.wait_for(lambda s: s["bridge"]["backpressure"] >= 1, 30.0, "back-pressure")
        assert status["bridge"]["spool"]["bytes"] <= 16384
        assert status["bridge"]["dropped_qos0"] == 0
        testbed.restore_region("primary")
        assert publisher.wait_handed_over(800, 90.0)
        missing = wait_delivered(publisher.expected(), observers)
        assert not missing, f"{len(missing)} lost"
        status = agent.wait_for(lambda s: s["bridge"]["spool"]["depth"] == 0, 30.0, "drained")
        assert not status["bridge"]["spool"]["full"]


def test_full_disk_applies_backpressure_then_drains(testbed: TwoRegions) -> None:
    disk_dir = testbed.info.agent_config.parent / "small-disk"
    # Room for SQLite's WAL (up to 4 MiB before a checkpoint) once freed.
    with small_disk(disk_dir, 16 * 1024) as disk:
        on_disk = {"bridge": {"spool": {"path": str(disk / "spool.sqlite")}}}
        with gateway(testbed, on_disk) as (agent, observers, publisher):
            testbed.kill_region("primary")
            testbed.kill_region("secondary")
            agent.wait_for(lambda s: not s["connected"], 20.0, "no region")
            filler = fill(disk)
            publisher.publish_many(TOPICS, 2000)  # the spool must grow: the disk says no
            status = agent.wait_for(
                lambda s: s["bridge"]["spool"]["disk_full"], 30.0, "disk-full back-pressure"
            )
            assert status["bridge"]["backpressure"] >= 1
            assert status["bridge"]["pending_local"] > 0
            assert "file system holding the spool is full" in agent.log_text()
            filler.unlink()
            testbed.restore_region("primary")
            assert publisher.wait_handed_over(4000, 90.0)
            missing = wait_delivered(publisher.expected(), observers)
            assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
            status = agent.wait_for(lambda s: s["bridge"]["spool"]["depth"] == 0, 30.0, "drained")
            assert not status["bridge"]["spool"]["disk_full"]


def test_full_disk_at_start_waits_for_room(testbed: TwoRegions) -> None:
    disk_dir = testbed.info.agent_config.parent / "small-disk"
    with small_disk(disk_dir, 16 * 1024) as disk:
        filler = fill(disk)
        on_disk = {"bridge": {"spool": {"path": str(disk / "spool.sqlite")}}}
        with gateway(testbed, on_disk) as (agent, observers, publisher):
            status = agent.wait_for(lambda s: s["bridge"]["spool"]["disk_full"], 10.0, "disk full")
            assert status["connected"]  # the cloud side did not wait for the disk
            publisher.publish_many(TOPICS, 100)
            filler.unlink()
            assert publisher.wait_handed_over(200, 30.0)
            assert not wait_delivered(publisher.expected(), observers)
            status = agent.wait_for(lambda s: not s["bridge"]["spool"]["disk_full"], 10.0, "room")
            assert not list(disk.glob("*.corrupt-*"))


def test_corrupt_spool_is_moved_aside_and_the_agent_goes_on(testbed: TwoRegions) -> None:
    state = testbed.info.agent_config.parent / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "spool.sqlite").write_bytes(b"this is not a database" * 100)
    with gateway(testbed) as (agent, observers, publisher):
        status = agent.status()
        assert status is not None
        aside = status["bridge"]["spool"]["recovered_from"]
        assert aside and Path(aside).exists()
        assert "unreadable" in agent.log_text()
        publisher.publish_many(TOPICS, 50)
        assert publisher.wait_handed_over(100, 30.0)
        assert not wait_delivered(publisher.expected(), observers)


def test_oversize_and_bad_topics_go_to_dead_letters(testbed: TwoRegions) -> None:
    with gateway(testbed) as (agent, observers, publisher):
        with inside(testbed.info.netns):
            raw = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw")
            raw.connect(testbed.info.local.host, testbed.info.local.port)
        raw.loop_start()
        raw.publish("sensors/big", b"x" * (129 * 1024), qos=1).wait_for_publish(10)
        raw.publish("sensors/a/b/c/d/e/f/g", b"{}", qos=1).wait_for_publish(10)
        raw.loop_stop()
        raw.disconnect()
        publisher.publish_many(TOPICS, 20)
        assert publisher.wait_handed_over(40, 30.0)
        assert not wait_delivered(publisher.expected(), observers)
        status = agent.wait_for(lambda s: s["bridge"]["dead_lettered"] >= 2, 30.0, "dead")
        assert status["bridge"]["spool"]["dead_letters"] == 2
        # Nothing is stuck retrying: the spool drains completely.
        agent.wait_for(lambda s: s["bridge"]["spool"]["depth"] == 0, 30.0, "drained spool")
        log = agent.log_text()
        assert "exceeds AWS IoT's 131072" in log and "slashes" in log


def test_cloud_commands_reach_local_after_failover(testbed: TwoRegions) -> None:
    with gateway(testbed) as (agent, _observers, _publisher):
        received: list[tuple[str, bytes]] = []
        got = threading.Event()

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            received.append((message.topic, bytes(message.payload)))
            got.set()

        with inside(testbed.info.netns):
            local = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-app")
            local.on_message = on_message
            local.connect(testbed.info.local.host, testbed.info.local.port)
            local.subscribe("commands/#", qos=1)
            local.loop_start()
        testbed.kill_region("primary")
        agent.wait_connected("region-b")
        time.sleep(0.5)  # let the agent's SUBSCRIBE in region-b complete
        cloud = region_client(testbed.info, "secondary")
        cloud.publish("cmd/iotdr-device-1/reboot", b'{"now": true}', qos=1).wait_for_publish(10)
        assert got.wait(20.0)
        assert received[0] == ("commands/reboot", b'{"now": true}')
        cloud.loop_stop()
        cloud.disconnect()
        local.loop_stop()
        local.disconnect()
