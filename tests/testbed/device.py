"""A device's single connection attempt to a region, told apart by how it ends.

Connects with the device certificate, by the region's host name: the name
is resolved through the testbed's DNS inside the namespace (dnspython reads
the namespace's resolv.conf) and TLS verifies that name.
"""

import enum
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dns.resolver
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotdr.testbed import Testbed, client_context
from iotdr.testbed.topology import resolve_role


class Outcome(enum.Enum):
    CONNECTED = "connected"
    REFUSED = "connection refused"
    TIMED_OUT = "connect timed out"
    TLS_REJECTED = "server certificate rejected"
    CLOSED_WITHOUT_CONNACK = "closed after TLS, no CONNACK"
    CONNACK_FAILURE = "CONNACK with a failure reason"
    NO_ANSWER = "no CONNACK and no close"


@dataclass
class Attempt:
    outcome: Outcome
    reason: str = ""  # the CONNACK reason string, if one came
    client: mqtt.Client | None = field(default=None, repr=False)

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publishes at QoS 1 and waits for the PUBACK."""
        assert self.client is not None, f"not connected: {self.outcome}"
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published(), "no PUBACK"


def resolve(testbed: Testbed, host: str) -> str:
    resolver = dns.resolver.Resolver(filename=str(testbed.resolv_conf))
    resolver.lifetime = 5.0
    with testbed.inside():
        answer = resolver.resolve(host, "A")
    return str(answer[0])


@contextmanager
def connect(testbed: Testbed, region: str, *, timeout: float = 3.0) -> Iterator[Attempt]:
    """One MQTT5 connection attempt as the device; disconnects on exit."""
    info = testbed.info
    target = info.region(resolve_role(region))
    ended = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        result.setdefault("connack", reason_code)
        ended.set()

    def on_disconnect(
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        result.setdefault("closed", reason_code)
        ended.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=info.device.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    client.tls_set_context(
        client_context(info.ca.cert, info.device.cert, info.device.key, server_hostname=target.host)
    )
    client.connect_timeout = timeout
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    address = resolve(testbed, target.host)
    try:
        with testbed.inside():
            client.connect(address, target.port, keepalive=5)
            client.loop_start()
    except ConnectionRefusedError:
        yield Attempt(Outcome.REFUSED)
        return
    except TimeoutError:
        yield Attempt(Outcome.TIMED_OUT)
        return
    except ssl.SSLCertVerificationError as exc:
        yield Attempt(Outcome.TLS_REJECTED, exc.verify_message)
        return
    try:
        ended.wait(timeout)
        connack: ReasonCode | None = result.get("connack")
        if connack is None:
            outcome = Outcome.CLOSED_WITHOUT_CONNACK if "closed" in result else Outcome.NO_ANSWER
            yield Attempt(outcome)
        elif connack.is_failure:
            yield Attempt(Outcome.CONNACK_FAILURE, connack.getName())
        else:
            yield Attempt(Outcome.CONNECTED, connack.getName(), client)
    finally:
        client.disconnect()
        client.loop_stop()
