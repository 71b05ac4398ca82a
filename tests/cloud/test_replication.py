"""Every event type through the production path: rule item -> stream -> worker -> secondary."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from iotdr.cloud.events import REPLICA_CLIENT_TOKEN_PREFIX
from iotdr.cloud.retry_runner import run_retries
from iotdr.cloud.shadow_apply import read_shadow_state
from tests.cloud import aws_events as ev
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions


def _thing(regions: MotoRegions, region: str, name: str) -> dict[str, object] | None:
    try:
        return dict(regions.clients[region].iot.describe_thing(thingName=name))
    except ClientError:
        return None


def _create_device(regions: MotoRegions, name: str) -> str:
    """A thing with a certificate and a policy naming the primary region, in the primary."""
    iot = regions.clients[PRIMARY].iot
    iot.create_thing(thingName=name, attributePayload={"attributes": {"serial": "1"}})
    cert = iot.create_keys_and_certificate(setAsActive=True)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"arn:aws:iot:{PRIMARY}:123456789012:client/{name}",
            }
        ],
    }
    iot.create_policy(policyName=f"{name}-policy", policyDocument=json.dumps(policy))
    iot.attach_policy(policyName=f"{name}-policy", target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
    return cert["certificateId"]


def test_thing_with_certificate_and_policy_reaches_the_secondary(regions: MotoRegions) -> None:
    cert_id = _create_device(regions, "dev-1")
    regions.publish(PRIMARY, ev.thing("dev-1", "CREATED", attributes={"serial": "1"}))
    report = regions.replicate(SECONDARY, replay=True)
    assert report.applied == 1 and report.failed == 0

    secondary = regions.clients[SECONDARY].iot
    assert secondary.describe_thing(thingName="dev-1")["attributes"] == {"serial": "1"}
    cert = secondary.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    principals = secondary.list_thing_principals(thingName="dev-1")["principals"]
    assert principals == [cert["certificateArn"]]
    policies = secondary.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert [p["policyName"] for p in policies] == ["dev-1-policy"]
    document = secondary.get_policy(policyName="dev-1-policy")["policyDocument"]
    assert f"arn:aws:iot:{SECONDARY}:" in document and PRIMARY not in document


def test_thing_update_merges_attributes_and_delete_removes_it(regions: MotoRegions) -> None:
    _create_device(regions, "dev-2")
    regions.publish(PRIMARY, ev.thing("dev-2", "CREATED", attributes={"a": "1", "b": "2"}))
    regions.publish(PRIMARY, ev.thing("dev-2", "UPDATED", attributes={"a": "1", "c": "3"}))
    regions.replicate(SECONDARY, replay=True)
    assert _thing(regions, SECONDARY, "dev-2")["attributes"] == {"a": "1", "c": "3"}  # type: ignore[index]

    regions.publish(PRIMARY, ev.thing("dev-2", "DELETED"))
    regions.replicate(SECONDARY, replay=True)
    assert _thing(regions, SECONDARY, "dev-2") is None


def test_an_older_thing_event_never_overwrites_a_newer_one(regions: MotoRegions) -> None:
    older = ev.thing("dev-3", "UPDATED", attributes={"fw": "1.0"})
    newer = ev.thing("dev-3", "UPDATED", attributes={"fw": "2.0"})
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-3")
    regions.publish(PRIMARY, newer)
    regions.publish(PRIMARY, older)  # arrives late
    report = regions.replicate(SECONDARY)
    assert report.skipped == {"SKIP_STALE": 1}
    assert _thing(regions, SECONDARY, "dev-3")["attributes"] == {"fw": "2.0"}  # type: ignore[index]


def test_thing_types_create_deprecate_associate_delete(regions: MotoRegions) -> None:
    regions.publish(PRIMARY, ev.thing_type("sensor", "CREATED"))
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-4")
    regions.publish(PRIMARY, ev.thing("dev-4", "CREATED"))
    regions.publish(PRIMARY, ev.type_association("dev-4", "sensor", "ADDED"))
    regions.replicate(SECONDARY, replay=True)
    iot = regions.clients[SECONDARY].iot
    assert iot.describe_thing(thingName="dev-4")["thingTypeName"] == "sensor"
    described = iot.describe_thing_type(thingTypeName="sensor")
    assert described["thingTypeProperties"]["searchableAttributes"] == ["serial"]

    regions.publish(PRIMARY, ev.type_association("dev-4", "sensor", "REMOVED"))
    regions.publish(PRIMARY, ev.thing_type("sensor", "UPDATED", deprecated=True))
    regions.replicate(SECONDARY, replay=True)
    assert "thingTypeName" not in iot.describe_thing(thingName="dev-4")
    assert iot.describe_thing_type(thingTypeName="sensor")["thingTypeMetadata"]["deprecated"]

    regions.publish(PRIMARY, ev.thing_type("sensor", "DELETED"))
    report = regions.replicate(SECONDARY, replay=True)
    assert report.failed == 0
    with pytest.raises(ClientError):
        iot.describe_thing_type(thingTypeName="sensor")


def test_thing_groups_hierarchy_and_membership(regions: MotoRegions) -> None:
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-5")
    regions.publish(PRIMARY, ev.thing("dev-5", "CREATED"))
    regions.publish(PRIMARY, ev.thing_group("site", "CREATED", attributes={"city": "Oslo"}))
    regions.publish(PRIMARY, ev.thing_group("floor-1", "CREATED", parent="site"))
    regions.publish(PRIMARY, ev.hierarchy("site", "floor-1", "ADDED"))
    regions.publish(PRIMARY, ev.membership("floor-1", "dev-5", "ADDED"))
    regions.publish(PRIMARY, ev.thing_group("site", "UPDATED", attributes={"city": "Bergen"}))
    report = regions.replicate(SECONDARY, replay=True)
    assert report.failed == 0
    iot = regions.clients[SECONDARY].iot
    floor = iot.describe_thing_group(thingGroupName="floor-1")
    assert floor["thingGroupMetadata"]["parentGroupName"] == "site"
    site = iot.describe_thing_group(thingGroupName="site")
    assert site["thingGroupProperties"]["attributePayload"]["attributes"] == {"city": "Bergen"}
    groups = iot.list_thing_groups_for_thing(thingName="dev-5")["thingGroups"]
    assert [g["groupName"] for g in groups] == ["floor-1"]

    regions.publish(PRIMARY, ev.membership("floor-1", "dev-5", "REMOVED"))
    regions.publish(PRIMARY, ev.hierarchy("site", "floor-1", "REMOVED"))
    regions.publish(PRIMARY, ev.thing_group("floor-1", "DELETED"))
    assert regions.replicate(SECONDARY, replay=True).failed == 0
    assert iot.list_thing_groups_for_thing(thingName="dev-5")["thingGroups"] == []
    names = [g["groupName"] for g in iot.list_thing_groups()["thingGroups"]]
    assert names == ["site"]


@pytest.mark.parametrize("shadow", [None, "config"])
def test_shadows_arrive_in_version_order_and_deletes_replicate(
    regions: MotoRegions, shadow: str | None
) -> None:
    regions.clients[SECONDARY].iot.create_thing(thingName="dev-6")
    v1 = ev.shadow_documents("dev-6", 1, {"reported": {"temp": 20, "fan": "on"}}, shadow=shadow)
    v2 = ev.shadow_documents(
        "dev-6", 2, {"reported": {"temp": 21}, "desired": {"led": 1}}, shadow=shadow
    )
    regions.publish(PRIMARY, v2)
    regions.publish(PRIMARY, v1)  # the older one arrives last
    regions.replicate(SECONDARY, replay=True)
    data = regions.clients[SECONDARY].iot_data
    assert read_shadow_state(data, "dev-6", shadow) == {
        "reported": {"temp": 21},
        "desired": {"led": 1},
    }
    regions.publish(PRIMARY, ev.shadow_deleted("dev-6", 3, shadow=shadow))
    regions.replicate(SECONDARY, replay=True)
    assert read_shadow_state(data, "dev-6", shadow) is None


def test_reverse_replication_while_failed_over_without_loops(regions: MotoRegions) -> None:
    # Failed over: the secondary is active; a device made there reaches the primary.
    regions.set_active(SECONDARY)
    regions.clients[SECONDARY].iot.create_thing(thingName="dev-7")
    regions.publish(SECONDARY, ev.thing("dev-7", "CREATED", attributes={"made": "during-outage"}))
    regions.publish(
        SECONDARY,
        ev.shadow_documents("dev-7", 5, {"reported": {"x": 1}}),
    )
    assert regions.replicate(PRIMARY).applied == 2
    assert _thing(regions, PRIMARY, "dev-7")["attributes"] == {"made": "during-outage"}  # type: ignore[index]
    assert read_shadow_state(regions.clients[PRIMARY].iot_data, "dev-7", None) == {
        "reported": {"x": 1}
    }
    # The primary's registry echoes the change it just applied; the rule records
    # it with origin=primary. The secondary, the active region, drops it.
    regions.publish(PRIMARY, ev.thing("dev-7", "CREATED", attributes={"made": "during-outage"}))
    echo = ev.shadow_documents(
        "dev-7", 1, {"reported": {"x": 1}}, client_token=f"{REPLICA_CLIENT_TOKEN_PREFIX}:x"
    )
    regions.publish(PRIMARY, echo)
    report = regions.replicate(SECONDARY)
    assert report.applied == 0
    # Its stream also held its own two records of the outage, never applied by itself.
    assert report.skipped == {"SKIP_INACTIVE_ORIGIN": 2, "SKIP_OWN_REGION": 2}


def test_a_failure_goes_to_the_error_table_and_the_retry_runner_resolves_it(
    regions: MotoRegions,
) -> None:
    # The membership names a thing the secondary does not have yet.
    regions.publish(PRIMARY, ev.thing_group("g", "CREATED"))
    regions.publish(PRIMARY, ev.membership("g", "late-thing", "ADDED"))
    report = regions.replicate(SECONDARY)
    assert report.failed == 1
    dynamodb = regions.clients[SECONDARY].dynamodb
    assert dynamodb.scan(TableName=TABLES.errors)["Count"] == 1

    regions.clients[PRIMARY].iot.create_thing(thingName="late-thing")
    regions.publish(PRIMARY, ev.thing("late-thing", "CREATED"))
    regions.replicate(SECONDARY)
    retry = run_retries(regions.worker(SECONDARY), dynamodb=dynamodb, error_table=TABLES.errors)
    assert (retry.resolved, retry.still_failing) == (1, 0)
    assert dynamodb.scan(TableName=TABLES.errors)["Count"] == 0
    groups = regions.clients[SECONDARY].iot.list_thing_groups_for_thing(thingName="late-thing")
    assert [g["groupName"] for g in groups["thingGroups"]] == ["g"]
