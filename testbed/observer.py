"""Observer: an MQTT client that watches a region from inside the testbed.

It connects with the observer certificate to the region's *address* (no
resolver involved) while TLS verifies the region's *host name*, subscribes
to the given topic filters and records every message with its arrival time
(time.monotonic()). Tests wait on a Condition for what they expect, never
sleep-poll. When its region dies and comes back, paho's network thread
reconnects by itself and subscribes again; its session is persistent and
the regions save sessions, so messages that reach a restored region before
the observer is back wait for it.

The network thread is started while the calling thread is inside the
namespace, and threads inherit their creator's namespace, so every socket
it ever opens (reconnects included) is inside the testbed.
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotdr.testbed.contract import TestbedInfo
from iotdr.testbed.netns import inside
from iotdr.testbed.tls import client_context
from iotdr.testbed.topology import resolve_role

_KEEPALIVE_S = 5
# Reconnect quickly: tests restore a region and wait for the observer.
_RECONNECT_MIN_S = 1
_RECONNECT_MAX_S = 2
_CONNECT_TIMEOUT_S = 3.0
_SESSION_EXPIRY_S = 3600


@dataclass(frozen=True, slots=True)
class ObservedMessage:
    topic: str
    payload: bytes
    received_at: float  # time.monotonic()


class Observer:
    def __init__(
        self,
        info: TestbedInfo,
        region: str,
        topics: Sequence[str],
        *,
        client_id: str | None = None,
    ) -> None:
        """Watches `topics` on `region` (primary|secondary or its name); call start()."""
        self._netns = info.netns
        self._region = info.region(resolve_role(region))
        self._topics = list(topics)
        self._condition = threading.Condition()
        self._messages: list[ObservedMessage] = []
        self._ready = False  # connected and subscribed
        self._connections = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{info.observer.client_id}-{self._region.name}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.tls_set_context(
            client_context(
                info.ca.cert,
                info.observer.cert,
                info.observer.key,
                server_hostname=self._region.host,
            )
        )
        self._client.connect_timeout = _CONNECT_TIMEOUT_S
        self._client.reconnect_delay_set(_RECONNECT_MIN_S, _RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # -- life cycle ----------------------------------------------------------

    def start(self) -> "Observer":
        # A persistent session: the region (which saves sessions) queues for
        # us across its own restart until we are back.
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = _SESSION_EXPIRY_S
        with inside(self._netns):
            self._client.connect_async(
                self._region.address,
                self._region.port,
                _KEEPALIVE_S,
                clean_start=False,
                properties=session,
            )
            self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> "Observer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- paho callbacks (network thread) -------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            # Subscribed on every connection: a region killed before its next
            # autosave has lost our session.
            client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._condition:
            self._ready = True
            self._connections += 1
            self._condition.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._condition:
            self._ready = False
            self._condition.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        observed = ObservedMessage(message.topic, bytes(message.payload), time.monotonic())
        with self._condition:
            self._messages.append(observed)
            self._condition.notify_all()

    # -- for tests -------------------------------------------------------------

    @property
    def messages(self) -> list[ObservedMessage]:
        with self._condition:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many times the observer has connected and subscribed so far."""
        with self._condition:
            return self._connections

    def clear(self) -> None:
        with self._condition:
            self._messages.clear()

    def wait_for(
        self, predicate: Callable[[Sequence[ObservedMessage]], bool], timeout: float
    ) -> bool:
        """Waits until `predicate(messages)` holds; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: predicate(self._messages), timeout)

    def wait_for_message(
        self,
        *,
        topic: str | None = None,
        payload: bytes | None = None,
        timeout: float,
    ) -> ObservedMessage | None:
        """The first recorded message matching topic and payload (when given)."""

        def first_match() -> ObservedMessage | None:
            for message in self._messages:
                if (topic is None or message.topic == topic) and (
                    payload is None or message.payload == payload
                ):
                    return message
            return None

        with self._condition:
            return self._condition.wait_for(first_match, timeout)

    def wait_connected(self, timeout: float, *, connections: int = 1) -> bool:
        """Waits until connected and subscribed, for at least the n-th time."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self._ready and self._connections >= connections, timeout
            )

    def wait_disconnected(self, timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: not self._ready, timeout)
