"""Registry and shadow messages in the formats AWS documents (registry-events.html,
device-shadow-mqtt.html), as the topic rules receive them."""

from __future__ import annotations

import itertools
from typing import Any

_clock = itertools.count(1_700_000_000_000)
_ids = itertools.count(1)

Message = tuple[str, dict[str, Any]]


def _common(event_type: str, operation: str) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventId": f"event-{next(_ids)}",
        "timestamp": next(_clock),
        "operation": operation,
        "accountId": "123456789012",
    }


def thing(
    name: str,
    operation: str,
    *,
    attributes: dict[str, str] | None = None,
    thing_type: str | None = None,
    version: int = 1,
) -> Message:
    payload = _common("THING_EVENT", operation) | {
        "thingId": f"id-{name}",
        "thingName": name,
        "versionNumber": version,
        "thingTypeName": thing_type,
        "attributes": attributes or {},
    }
    return f"$aws/events/thing/{name}/{operation.lower()}", payload


def thing_type(name: str, operation: str, *, deprecated: bool = False) -> Message:
    payload = _common("THING_TYPE_EVENT", operation) | {
        "thingTypeId": f"id-{name}",
        "thingTypeName": name,
        "isDeprecated": deprecated,
        "deprecationDate": None,
        "searchableAttributes": ["serial"],
        "propagatingAttributes": [],
        "description": f"{name} devices",
    }
    return f"$aws/events/thingType/{name}/{operation.lower()}", payload


def type_association(thing_name: str, type_name: str, operation: str) -> Message:
    payload = _common("THING_TYPE_ASSOCIATION_EVENT", operation) | {
        "thingId": f"id-{thing_name}",
        "thingName": thing_name,
        "thingTypeName": type_name,
    }
    return f"$aws/events/thingTypeAssociation/thing/{thing_name}/{type_name}", payload


def thing_group(
    name: str,
    operation: str,
    *,
    parent: str | None = None,
    attributes: dict[str, str] | None = None,
) -> Message:
    payload = _common("THING_GROUP_EVENT", operation) | {
        "thingGroupId": f"id-{name}",
        "thingGroupName": name,
        "versionNumber": 1,
        "parentGroupName": parent,
        "parentGroupId": f"id-{parent}" if parent else None,
        "description": f"group {name}",
        "rootToParentThingGroups": [],
        "attributes": attributes or {},
        "dynamicGroupMappingId": None,
    }
    return f"$aws/events/thingGroup/{name}/{operation.lower()}", payload


def membership(group: str, thing_name: str, operation: str) -> Message:
    # The payload names neither the group nor the thing, only their ids and ARNs.
    payload = _common("THING_GROUP_MEMBERSHIP_EVENT", operation) | {
        "groupArn": f"arn:aws:iot:us-east-1:123456789012:thinggroup/{group}",
        "groupId": f"id-{group}",
        "thingArn": f"arn:aws:iot:us-east-1:123456789012:thing/{thing_name}",
        "thingId": f"id-{thing_name}",
        "membershipId": "8505ebf8-4d32-4286-80e9-c23a4a16bbd8",
    }
    topic = (
        f"$aws/events/thingGroupMembership/thingGroup/{group}/thing/{thing_name}/"
        f"{operation.lower()}"
    )
    return topic, payload


def hierarchy(parent: str, child: str, operation: str) -> Message:
    payload = _common("THING_GROUP_HIERARCHY_EVENT", operation) | {
        "thingGroupId": f"id-{parent}",
        "thingGroupName": parent,
        "childGroupId": f"id-{child}",
        "childGroupName": child,
    }
    topic = (
        f"$aws/events/thingGroupHierarchy/thingGroup/{parent}/childThingGroup/{child}/"
        f"{operation.lower()}"
    )
    return topic, payload


def shadow_documents(
    thing_name: str,
    version: int,
    state: dict[str, Any],
    *,
    shadow: str | None = None,
    client_token: str | None = None,
) -> Message:
    prefix = f"$aws/things/{thing_name}/shadow" + (f"/name/{shadow}" if shadow else "")
    payload: dict[str, Any] = {
        "previous": {"state": {}, "metadata": {}, "version": version - 1},
        "current": {"state": state, "metadata": {}, "version": version},
        "timestamp": 1_700_000_000,
    }
    if client_token:
        payload["clientToken"] = client_token
    return f"{prefix}/update/documents", payload


def shadow_deleted(thing_name: str, version: int, *, shadow: str | None = None) -> Message:
    prefix = f"$aws/things/{thing_name}/shadow" + (f"/name/{shadow}" if shadow else "")
    return f"{prefix}/delete/accepted", {"version": version, "timestamp": 1_700_000_000}
