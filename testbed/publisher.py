"""A gateway-side publisher: sequence-numbered QoS 1 messages into the
testbed's local broker, as sensors on a gateway would send them.

Each payload is JSON `{"seq": N, "topic": T}`; `expected()` lists what was
handed over (PUBACKed by the local broker), so a test can check that every
accepted message reached a region.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from iotdr.testbed.contract import TestbedInfo
from iotdr.testbed.netns import inside


class LocalPublisher:
    def __init__(
        self,
        info: TestbedInfo,
        client_id: str = "sensor-publisher",
        max_inflight: int = 100,
        pad: int = 0,
    ) -> None:
        self._info = info
        self._pad = "x" * pad  # filler, for payloads of a given size
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=False,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 2)
        self._lock = threading.Condition()
        self._acked: set[int] = set()
        self._mids: dict[int, tuple[str, int]] = {}
        self._handed_over: list[tuple[str, int]] = []
        self._client.on_publish = self._published

    def start(self) -> LocalPublisher:
        with inside(self._info.netns):
            self._client.connect(self._info.local.host, self._info.local.port, keepalive=30)
            self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, seq: int) -> None:
        fields: dict[str, object] = {"seq": seq, "topic": topic}
        if self._pad:
            fields["pad"] = self._pad
        payload = json.dumps(fields)
        info = self._client.publish(topic, payload, qos=1)
        with self._lock:
            if info.mid in self._acked:
                self._acked.discard(info.mid)
                self._handed_over.append((topic, seq))
            else:
                self._mids[info.mid] = (topic, seq)

    def publish_many(
        self,
        topics: list[str],
        count: int,
        rate: float | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        """`count` messages per topic, interleaved; at `rate` messages/s if
        given; only while `gate` (if given) is set."""
        gap = 1.0 / rate if rate else 0.0
        start = time.monotonic()
        n = 0
        for seq in range(count):
            for topic in topics:
                if gate is not None and not gate.is_set():
                    paused = time.monotonic()
                    gate.wait()
                    start += time.monotonic() - paused
                self.publish(topic, seq)
                n += 1
                if gap:
                    delay = start + n * gap - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

    def _published(self, _c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self._lock:
            item = self._mids.pop(mid, None)
            if item is None:
                self._acked.add(mid)
            else:
                self._handed_over.append(item)
            self._lock.notify_all()

    def wait_handed_over(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self._handed_over) >= count, timeout)

    def wait_settled(self, timeout: float) -> bool:
        """Waits until every publish so far is handed over (none in flight)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._mids, timeout)

    def expected(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._handed_over)
