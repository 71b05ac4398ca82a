"""The MQTT health check of one region: connect, subscribe, publish N, expect N back.

Route 53 can only check HTTP(S), TCP or a CloudWatch alarm, and a region's
IoT endpoint answering TCP says little about its broker; so this check runs
the broker's real path (mutual TLS, CONNECT, SUBSCRIBE, PUBLISH, delivery).

Every call builds its own `_Probe` with its own counters and its own client
id: nothing lives in module globals (the reference kept its counters there,
so a warm Lambda container stopped waiting for echoes), and two checks
never share an MQTT session or trip AWS IoT's limit of one CONNECT per
second per client id (https://docs.aws.amazon.com/general/latest/gr/iot-core.html).

Route 53 health checks cannot send custom headers, so the deployed check
has no HTTP face: it runs on a schedule, puts a CloudWatch metric, and
Route 53 watches its alarm (a CLOUDWATCH_METRIC health check).
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig:
    host: str
    port: int = 8883
    tls_context: Callable[[], ssl.SSLContext]
    client_id_prefix: str = "iotdr-health"
    topic_prefix: str = "iotdr/health"
    message_count: int = 3
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class HealthResult:
    healthy: bool
    received: int
    expected: int
    detail: str
    elapsed_s: float


@dataclass
class _Probe:
    """The state of one check; thrown away after it."""

    expected: int
    nonce: str
    received: set[int] = field(default_factory=set)
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    all_received: threading.Event = field(default_factory=threading.Event)
    connect_failure: str | None = None

    def on_connect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any = None
    ) -> None:
        if reason.is_failure:
            self.connect_failure = f"CONNACK {reason}"
        self.connected.set()

    def on_subscribe(self, _c: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any = None) -> None:
        self.subscribed.set()

    def on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        text = message.payload.decode(errors="replace")
        nonce, _, index = text.partition(":")
        if nonce == self.nonce and index.isdigit():  # ignore other checkers' messages
            self.received.add(int(index))
            if len(self.received) >= self.expected:
                self.all_received.set()


def check_broker(config: HealthCheckConfig) -> HealthResult:
    """One full check. Never raises for a broker problem: it reports unhealthy."""
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    probe = _Probe(expected=config.message_count, nonce=run_id)
    topic = f"{config.topic_prefix}/{run_id}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{config.client_id_prefix}-{run_id}",
        protocol=MQTTProtocolVersion.MQTTv311,
        clean_session=True,
    )
    client.on_connect = probe.on_connect
    client.on_subscribe = probe.on_subscribe
    client.on_message = probe.on_message

    def result(healthy: bool, detail: str) -> HealthResult:
        return HealthResult(
            healthy, len(probe.received), config.message_count, detail, time.monotonic() - started
        )

    deadline = started + config.timeout_s
    try:
        client.tls_set_context(config.tls_context())
        client.connect(config.host, config.port, keepalive=30)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return result(False, f"connect: {exc}")
    client.loop_start()
    try:
        if not probe.connected.wait(max(0.0, deadline - time.monotonic())):
            return result(False, "no CONNACK before the timeout")
        if probe.connect_failure:
            return result(False, probe.connect_failure)
        client.subscribe(topic, qos=1)
        if not probe.subscribed.wait(max(0.0, deadline - time.monotonic())):
            return result(False, "no SUBACK before the timeout")
        for index in range(config.message_count):
            client.publish(topic, f"{run_id}:{index}", qos=1)
        if not probe.all_received.wait(max(0.0, deadline - time.monotonic())):
            return result(False, f"{len(probe.received)} of {config.message_count} came back")
        return result(True, "all messages came back")
    finally:
        client.disconnect()
        client.loop_stop()
