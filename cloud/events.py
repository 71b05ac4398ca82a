"""Replication events: what happened in one region, parsed from AWS's own messages.

Theory of operation: a topic rule in each region copies every registry event
and every accepted shadow change into the replication table, adding the MQTT
topic and the region it saw the message in (`origin`). `parse_event` turns
one such message (topic + payload) into one of the frozen event classes
below. Nothing here does I/O; the worker (`worker.py`) applies the events.

Formats are the documented ones:
- registry events: https://docs.aws.amazon.com/iot/latest/developerguide/registry-events.html
  (membership and hierarchy payloads carry ids, not names: the names come
  from the topic, which the rule stores alongside the payload);
- shadow documents and delete/accepted:
  https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from iotdr.cloud.errors import EventFormatError

# Shadow updates made by the replicator carry this client token, so the
# target region's topic rule can leave them out (loop prevention, see merge.py).
REPLICA_CLIENT_TOKEN_PREFIX = "iotdr-replica"


class Operation(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    ADDED = "ADDED"
    REMOVED = "REMOVED"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingEvent:
    thing_name: str
    operation: Operation
    timestamp_ms: int
    thing_type_name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingTypeEvent:
    thing_type_name: str
    operation: Operation
    timestamp_ms: int
    is_deprecated: bool = False
    description: str | None = None
    searchable_attributes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingTypeAssociationEvent:
    thing_name: str
    thing_type_name: str
    operation: Operation
    timestamp_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingGroupEvent:
    group_name: str
    operation: Operation
    timestamp_ms: int
    parent_group_name: str | None = None
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingGroupMembershipEvent:
    group_name: str
    thing_name: str
    operation: Operation
    timestamp_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingGroupHierarchyEvent:
    parent_group_name: str
    child_group_name: str
    operation: Operation
    timestamp_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowUpdated:
    thing_name: str
    shadow_name: str | None  # None: the classic (unnamed) shadow
    version: int
    state: dict[str, Any]  # "desired" and/or "reported" of the current document
    client_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowDeleted:
    thing_name: str
    shadow_name: str | None
    version: int
    client_token: str | None = None


# Topic under which the management-event recorder (management.py) stores a
# CloudTrail-recorded IoT API call in the replication table; no MQTT topic.
MANAGEMENT_TOPIC_PREFIX = "iotdr/management/"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagementChange:
    """An IoT API call that publishes no registry event (registry-events.html
    covers things, types, groups and memberships only), as CloudTrail
    recorded it: certificate status, principal and policy attachments,
    policy versions. The applier re-reads the source region's current
    state of what it names, so only the names matter here."""

    event_name: str
    timestamp_ms: int
    thing_name: str | None = None
    certificate_id: str | None = None
    policy_name: str | None = None
    target: str | None = None  # AttachPolicy's target: a certificate ARN (or a thing group's)

    @property
    def target_certificate_id(self) -> str | None:
        if self.target and ":cert/" in self.target:
            return self.target.rsplit("/", 1)[1]
        return None


RegistryEvent = (
    ThingEvent
    | ThingTypeEvent
    | ThingTypeAssociationEvent
    | ThingGroupEvent
    | ThingGroupMembershipEvent
    | ThingGroupHierarchyEvent
    | ManagementChange
)
ShadowEvent = ShadowUpdated | ShadowDeleted
Event = RegistryEvent | ShadowEvent


def entity_key(event: Event) -> str:
    """The thing the event is about: events with one key are ordered against each other."""
    match event:
        case ThingEvent() | ThingTypeAssociationEvent():
            return f"thing#{event.thing_name}"
        case ThingTypeEvent():
            return f"thingType#{event.thing_type_name}"
        case ThingGroupEvent():
            return f"thingGroup#{event.group_name}"
        case ThingGroupMembershipEvent():
            return f"membership#{event.group_name}#{event.thing_name}"
        case ThingGroupHierarchyEvent():
            return f"hierarchy#{event.parent_group_name}#{event.child_group_name}"
        case ShadowUpdated() | ShadowDeleted():
            return f"shadow#{event.thing_name}#{event.shadow_name or ''}"
        case ManagementChange():
            return _management_key(event)


def _management_key(change: ManagementChange) -> str:
    if change.thing_name:
        return f"principals#{change.thing_name}"
    if change.target:
        return f"attachments#{change.target_certificate_id or change.target}"
    if change.certificate_id:
        return f"certificate#{change.certificate_id}"
    return f"policy#{change.policy_name}"


def order_of(event: Event) -> int:
    """Shadows order by their version (monotonic, even across deletes, per the
    Device Shadow docs); registry events by their millisecond timestamp, since
    a thing's versionNumber starts again at 1 when it is recreated."""
    if isinstance(event, ShadowUpdated | ShadowDeleted):
        return event.version
    return event.timestamp_ms


def parse_event(topic: str, payload: dict[str, Any]) -> Event:
    """One rule message -> one event; raises EventFormatError on anything else."""
    levels = topic.split("/")
    try:
        if topic.startswith("$aws/events/"):
            return _parse_registry(levels[2:], payload)
        if topic.startswith("$aws/things/"):
            return _parse_shadow(levels[2:], payload)
        if topic.startswith(MANAGEMENT_TOPIC_PREFIX):
            return _parse_management(levels[2], payload)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise EventFormatError(f"malformed message on {topic}: {exc!r}") from exc
    raise EventFormatError(f"not a registry or shadow topic: {topic}")


def _operation(payload: dict[str, Any]) -> Operation:
    return Operation(str(payload["operation"]).upper())


def _timestamp(payload: dict[str, Any]) -> int:
    return int(payload["timestamp"])


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _parse_registry(levels: list[str], payload: dict[str, Any]) -> RegistryEvent:
    kind = levels[0]
    operation = _operation(payload)
    timestamp = _timestamp(payload)
    if kind == "thing":
        return ThingEvent(
            thing_name=str(payload["thingName"]),
            operation=operation,
            timestamp_ms=timestamp,
            thing_type_name=payload.get("thingTypeName"),
            attributes=_str_map(payload.get("attributes")),
        )
    if kind == "thingType":
        return ThingTypeEvent(
            thing_type_name=str(payload["thingTypeName"]),
            operation=operation,
            timestamp_ms=timestamp,
            is_deprecated=bool(payload.get("isDeprecated", False)),
            description=payload.get("description"),
            searchable_attributes=tuple(payload.get("searchableAttributes") or ()),
        )
    if kind == "thingTypeAssociation":
        # $aws/events/thingTypeAssociation/thing/{thingName}/{thingTypeName}
        return ThingTypeAssociationEvent(
            thing_name=str(payload.get("thingName") or levels[2]),
            thing_type_name=str(payload.get("thingTypeName") or levels[3]),
            operation=operation,
            timestamp_ms=timestamp,
        )
    if kind == "thingGroup":
        return ThingGroupEvent(
            group_name=str(payload["thingGroupName"]),
            operation=operation,
            timestamp_ms=timestamp,
            parent_group_name=payload.get("parentGroupName"),
            description=payload.get("description"),
            attributes=_str_map(payload.get("attributes")),
        )
    if kind == "thingGroupMembership":
        # $aws/events/thingGroupMembership/thingGroup/{group}/thing/{thing}/{added|removed}
        return ThingGroupMembershipEvent(
            group_name=levels[2], thing_name=levels[4], operation=operation, timestamp_ms=timestamp
        )
    if kind == "thingGroupHierarchy":
        # $aws/events/thingGroupHierarchy/thingGroup/{parent}/childThingGroup/{child}/{op}
        return ThingGroupHierarchyEvent(
            parent_group_name=levels[2],
            child_group_name=levels[4],
            operation=operation,
            timestamp_ms=timestamp,
        )
    raise EventFormatError(f"unknown registry event kind {kind!r}")


def _parse_shadow(levels: list[str], payload: dict[str, Any]) -> ShadowEvent:
    # {thing}/shadow/update/documents, {thing}/shadow/name/{n}/update/documents,
    # {thing}/shadow/delete/accepted, {thing}/shadow/name/{n}/delete/accepted
    thing_name = levels[0]
    if levels[1] != "shadow":
        raise EventFormatError(f"not a shadow topic: {'/'.join(levels)}")
    shadow_name: str | None = None
    rest = levels[2:]
    if rest[0] == "name":
        shadow_name, rest = rest[1], rest[2:]
    token = payload.get("clientToken")
    if rest == ["update", "documents"]:
        current = payload["current"]
        state = current.get("state") or {}
        return ShadowUpdated(
            thing_name=thing_name,
            shadow_name=shadow_name,
            version=int(current["version"]),
            state={k: v for k, v in state.items() if k in ("desired", "reported")},
            client_token=token,
        )
    if rest == ["delete", "accepted"]:
        return ShadowDeleted(
            thing_name=thing_name,
            shadow_name=shadow_name,
            version=int(payload["version"]),
            client_token=token,
        )
    raise EventFormatError(f"not a replicated shadow topic: {'/'.join(levels)}")


def _optional(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return str(value) if value else None


def _parse_management(event_name: str, payload: dict[str, Any]) -> ManagementChange:
    change = ManagementChange(
        event_name=event_name,
        timestamp_ms=_timestamp(payload),
        thing_name=_optional(payload, "thingName"),
        certificate_id=_optional(payload, "certificateId"),
        policy_name=_optional(payload, "policyName"),
        target=_optional(payload, "target"),
    )
    if not (change.thing_name or change.certificate_id or change.policy_name):
        raise EventFormatError(f"management event {event_name} names nothing to replicate")
    return change
