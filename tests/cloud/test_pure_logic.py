"""The pure rules, as tables: parsing, merges, ordering, loop prevention, policy rewriting."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotdr.cloud import merge
from iotdr.cloud.errors import EventFormatError
from iotdr.cloud.events import (
    Operation,
    ShadowDeleted,
    ShadowUpdated,
    ThingGroupHierarchyEvent,
    ThingGroupMembershipEvent,
    entity_key,
    parse_event,
)
from iotdr.cloud.merge import Decision
from iotdr.cloud.records import message_of, rule_item
from tests.cloud import aws_events as ev


@pytest.mark.parametrize(
    ("message", "key"),
    [
        (ev.thing("t", "CREATED"), "thing#t"),
        (ev.thing_type("ty", "UPDATED"), "thingType#ty"),
        (ev.type_association("t", "ty", "ADDED"), "thing#t"),
        (ev.thing_group("g", "DELETED"), "thingGroup#g"),
        (ev.membership("g", "t", "ADDED"), "membership#g#t"),
        (ev.hierarchy("p", "c", "REMOVED"), "hierarchy#p#c"),
        (ev.shadow_documents("t", 3, {"reported": {}}), "shadow#t#"),
        (ev.shadow_documents("t", 3, {}, shadow="cfg"), "shadow#t#cfg"),
        (ev.shadow_deleted("t", 4, shadow="cfg"), "shadow#t#cfg"),
    ],
)
def test_every_documented_message_parses(message: tuple[str, dict[str, Any]], key: str) -> None:
    assert entity_key(parse_event(*message)) == key


def test_names_missing_from_payloads_come_from_the_topic() -> None:
    membership = parse_event(*ev.membership("grp", "dev", "REMOVED"))
    assert isinstance(membership, ThingGroupMembershipEvent)
    assert (membership.group_name, membership.thing_name) == ("grp", "dev")
    assert membership.operation is Operation.REMOVED
    hierarchy = parse_event(*ev.hierarchy("p", "c", "ADDED"))
    assert isinstance(hierarchy, ThingGroupHierarchyEvent)
    assert (hierarchy.parent_group_name, hierarchy.child_group_name) == ("p", "c")
    shadow = parse_event(*ev.shadow_documents("dev", 7, {"desired": {"a": 1}, "delta": {"a": 1}}))
    assert shadow == ShadowUpdated(
        thing_name="dev", shadow_name=None, version=7, state={"desired": {"a": 1}}
    )
    assert parse_event(*ev.shadow_deleted("dev", 8)) == ShadowDeleted(
        thing_name="dev", shadow_name=None, version=8
    )


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("dr/telemetry", {}),
        ("$aws/events/thing/t/created", {"operation": "CREATED"}),  # no timestamp
        ("$aws/events/jobs/x", {"operation": "CREATED", "timestamp": 1}),
        ("$aws/things/t/shadow/update/accepted", {}),
        ("$aws/things/t/shadow/update/documents", {"current": {}}),
    ],
)
def test_anything_else_is_a_format_error(topic: str, payload: dict[str, Any]) -> None:
    with pytest.raises(EventFormatError):
        parse_event(topic, payload)


@pytest.mark.parametrize(
    ("origin", "local", "active", "decision"),
    [
        ("us-east-1", "us-west-2", "us-east-1", Decision.APPLY),  # normal replication
        ("us-west-2", "us-west-2", "us-east-1", Decision.SKIP_OWN_REGION),
        ("us-west-2", "us-east-1", "us-east-1", Decision.SKIP_INACTIVE_ORIGIN),  # echo
        ("us-west-2", "us-east-1", "us-west-2", Decision.APPLY),  # reverse, failed over
        ("us-east-1", "us-west-2", "us-west-2", Decision.SKIP_INACTIVE_ORIGIN),  # echo
    ],
)
def test_loop_prevention(origin: str, local: str, active: str, decision: Decision) -> None:
    assert (
        merge.replication_decision(origin=origin, local_region=local, active_region=active)
        is decision
    )


@pytest.mark.parametrize(
    ("event_order", "applied", "decision"),
    [
        (5, None, Decision.APPLY),
        (5, 4, Decision.APPLY),
        (5, 5, Decision.APPLY),
        (4, 5, Decision.SKIP_STALE),
    ],
)
def test_version_ordering(event_order: int, applied: int | None, decision: Decision) -> None:
    assert merge.ordering_decision(event_order=event_order, applied_order=applied) is decision


@pytest.mark.parametrize(
    ("desired", "current", "patch"),
    [
        ({"a": "1"}, {"a": "1"}, {}),
        ({"a": "2"}, {"a": "1"}, {"a": "2"}),
        ({"a": "1", "b": "2"}, {"a": "1"}, {"b": "2"}),
        ({"a": "1"}, {"a": "1", "b": "2"}, {"b": ""}),  # "" removes under merge
        ({}, {}, {}),
    ],
)
def test_attribute_patch(
    desired: dict[str, str], current: dict[str, str], patch: dict[str, str]
) -> None:
    assert merge.attribute_patch(desired, current) == patch


@pytest.mark.parametrize(
    ("desired", "current", "patch"),
    [
        ({"reported": {"t": 1}}, {"reported": {"t": 1}}, {}),
        ({"reported": {"t": 2}}, {"reported": {"t": 1, "f": 0}}, {"reported": {"t": 2, "f": None}}),
        ({"reported": {"t": 1}}, {"reported": {"t": 1}, "desired": {"x": 1}}, {"desired": None}),
        (
            {"desired": {"n": {"a": 1}}},
            {"desired": {"n": {"a": 1, "b": 2}}},
            {"desired": {"n": {"b": None}}},
        ),
        ({"reported": {"v": None}}, {}, {"reported": {"v": None}}),
    ],
)
def test_shadow_state_patch(
    desired: dict[str, Any], current: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert merge.shadow_state_patch(desired, current) == patch


def test_policy_regions_are_rewritten_only_where_they_name_the_source() -> None:
    document = json.dumps(
        {
            "Statement": [
                {"Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"},
                {"Resource": "arn:aws:iot:eu-west-1:123456789012:topic/other"},
                {"Resource": "*", "Sid": "us-east-1 stays in prose"},
            ]
        }
    )
    out = json.loads(
        merge.rewrite_policy_regions(document, source_region="us-east-1", target_region="us-west-2")
    )
    resources = [s["Resource"] for s in out["Statement"]]
    assert resources == [
        "arn:aws:iot:us-west-2:123456789012:client/${iot:ClientId}",
        "arn:aws:iot:eu-west-1:123456789012:topic/other",
        "*",
    ]
    assert out["Statement"][2]["Sid"] == "us-east-1 stays in prose"
    assert merge.same_policy('{"a": 1}', '{ "a":1 }')


def test_a_rule_item_round_trips_to_the_message() -> None:
    topic, payload = ev.thing("t", "UPDATED", attributes={"x": "1"})
    payload["ratio"] = 0.5
    item = rule_item(topic, payload, origin="us-east-1", now_s=100)
    assert item["expires"] == 100 + 2 * 24 * 3600
    message = message_of(item)
    assert message is not None
    assert (message.topic, message.origin, message.payload) == (topic, "us-east-1", payload)
    assert message_of({"pk": "control#active-region", "region": "x"}) is None
