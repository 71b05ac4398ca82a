"""Gateway bridge settings: local broker, topic mappings, the disk spool.

Kept apart from `settings` because only gateways use them; parsed by the
same reader so errors name file and key the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from iotdr.agent.core.aws_limits import filter_violation

if TYPE_CHECKING:
    from iotdr.agent.core.settings import _Reader

MIB = 1024 * 1024


def rewrite(topic: str, strip_prefix: str, add_prefix: str) -> str:
    """Drop `strip_prefix` from the front (if there), then put `add_prefix` there."""
    if strip_prefix and topic.startswith(strip_prefix):
        topic = topic[len(strip_prefix) :]
    return add_prefix + topic


@dataclass(frozen=True, slots=True, kw_only=True)
class ToCloud:
    """Local topics forwarded to the active region."""

    filter: str  # MQTT topic filter on the local broker
    strip_prefix: str = ""  # removed from the local topic ...
    add_prefix: str = ""  # ... and this put in front for the cloud topic
    allow_reserved: bool = False  # may map onto AWS's reserved $aws/ topics
    drop_oldest_qos0: bool = False  # when the spool is full, QoS 0 may be dropped (counted)

    def cloud_topic(self, local_topic: str) -> str:
        rest = local_topic
        if self.strip_prefix and rest.startswith(self.strip_prefix):
            rest = rest[len(self.strip_prefix) :]
        return self.add_prefix + rest


@dataclass(frozen=True, slots=True, kw_only=True)
class FromCloud:
    """Cloud topics (commands, shadows) subscribed in the active region and
    published to the local broker, re-subscribed after every failover."""

    filter: str
    strip_prefix: str = ""
    add_prefix: str = ""

    def local_topic(self, cloud_topic: str) -> str:
        rest = cloud_topic
        if self.strip_prefix and rest.startswith(self.strip_prefix):
            rest = rest[len(self.strip_prefix) :]
        return self.add_prefix + rest


LOCAL_PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolSettings:
    path: str | None = None  # default: STATE_DIR/spool.sqlite
    max_bytes: int = 256 * MIB
    # Durable by default: every committed batch is fsynced (survives power loss).
    synchronous: str = "full"
    # Messages that arrive during one commit are stored by the next one
    # (group commit), up to this many at a time.
    batch_size: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    enabled: bool = False
    local_host: str = "127.0.0.1"
    local_port: int = 1883
    local_client_id: str | None = None  # default: CLIENT_ID-bridge
    # MQTT version of the local session. 3.1.1 by default: paho decodes MQTT 5
    # properties on every PUBLISH and PUBACK, which costs about a quarter of
    # the bridge's throughput (6,100-6,500 against 4,600-5,700 msg/s on one
    # core in alternating bench/bridge.py runs); the broker's own limit on
    # unacknowledged messages (mosquitto: max_inflight_messages) then bounds
    # what we hold.
    local_protocol: str = "3.1.1"
    # MQTT 5 only: Receive Maximum on the local session; messages delivered
    # but not yet acknowledged (held in memory while the spool is full) stay
    # below it.
    local_receive_maximum: int = 1000
    to_cloud: tuple[ToCloud, ...] = ()
    from_cloud: tuple[FromCloud, ...] = ()
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    inflight_window: int = 100  # QoS 1 publishes awaiting PUBACK at once
    message_id_property: str | None = "iotdr-msg-id"  # MQTT 5 user property; null: off


def _topic_filter(value: object, *, aws: bool) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError("is not a topic filter")
    problem = filter_violation(value, aws=aws)
    if problem:
        raise ValueError(problem)
    return value


def parse_bridge(reader: _Reader) -> BridgeSettings:
    d = BridgeSettings()
    to_cloud: list[ToCloud] = []
    for i, item in enumerate(_list(reader, "to_cloud")):
        sub = reader.item("to_cloud", i, item)
        to_cloud.append(
            ToCloud(
                filter=_checked(sub, "filter", aws=False),
                strip_prefix=sub.optional_string("strip_prefix") or "",
                add_prefix=sub.optional_string("add_prefix") or "",
                allow_reserved=sub.boolean("allow_reserved", False),
                drop_oldest_qos0=sub.boolean("drop_oldest_qos0", False),
            )
        )
        sub.reject_unknown()
    from_cloud: list[FromCloud] = []
    for i, item in enumerate(_list(reader, "from_cloud")):
        sub = reader.item("from_cloud", i, item)
        from_cloud.append(
            FromCloud(
                filter=_checked(sub, "filter", aws=True),
                strip_prefix=sub.optional_string("strip_prefix") or "",
                add_prefix=sub.optional_string("add_prefix") or "",
            )
        )
        sub.reject_unknown()
    spool_reader = reader.section("spool")
    ds = SpoolSettings()
    spool = SpoolSettings(
        path=spool_reader.optional_string("path"),
        max_bytes=spool_reader.integer("max_bytes", ds.max_bytes, minimum=4096, maximum=2**50),
        synchronous=spool_reader.choice("synchronous", ds.synchronous, ("full", "normal")),
        batch_size=spool_reader.integer("batch_size", ds.batch_size, minimum=1, maximum=100_000),
    )
    spool_reader.reject_unknown()
    enabled = reader.boolean("enabled", d.enabled)
    message_id = reader.raw("message_id_property")
    if message_id is not None and not isinstance(message_id, str | bool):
        raise reader.error("message_id_property", "must be a name or null")
    return BridgeSettings(
        enabled=enabled,
        local_host=reader.string("local_host", d.local_host),
        local_port=reader.integer("local_port", d.local_port, minimum=1, maximum=65535),
        local_client_id=reader.optional_string("local_client_id"),
        local_protocol=reader.choice("local_protocol", d.local_protocol, LOCAL_PROTOCOLS),
        local_receive_maximum=reader.integer(
            "local_receive_maximum", d.local_receive_maximum, minimum=1, maximum=65535
        ),
        to_cloud=tuple(to_cloud),
        from_cloud=tuple(from_cloud),
        spool=spool,
        inflight_window=reader.integer(
            "inflight_window", d.inflight_window, minimum=1, maximum=65535
        ),
        message_id_property=(
            d.message_id_property
            if message_id is None or message_id is True
            else None
            if message_id is False
            else str(message_id)
        ),
    )


def _list(reader: _Reader, name: str) -> list[object]:
    value = reader.raw(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise reader.error(name, f"must be a list of mappings, got {type(value).__name__}")
    return value


def _checked(reader: _Reader, name: str, *, aws: bool) -> str:
    value = reader.string(name)
    try:
        return _topic_filter(value, aws=aws)
    except ValueError as exc:
        raise reader.error(name, str(exc)) from None
