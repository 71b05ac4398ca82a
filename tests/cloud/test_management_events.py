"""Certificate and policy changes made after a thing exists reach the secondary.

AWS IoT publishes registry events for thing calls only; attaching a
certificate, revoking it, attaching a policy or changing a policy's
version reach EventBridge only as CloudTrail management events. The test
makes the real calls in the primary, lets `IotNotifications` emit what AWS
documents for each, delivers the CloudTrail events the template's rule
pattern matches to the real recorder, and runs the secondary's worker.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from iotdr.cloud.management import MANAGEMENT_EVENT_NAMES
from iotdr.cloud.reconcile import reconcile
from tests.cloud import aws_events as ev
from tests.cloud.aws_behaviour import IotNotifications, matches
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions
from tests.cloud.template_reader import resources_of

ACCOUNT = "123456789012"


def _pattern() -> dict[str, Any]:
    rule = resources_of("region.yaml", "AWS::Events::Rule")["ManagementEventRule"]
    pattern: dict[str, Any] = rule["Properties"]["EventPattern"]
    return pattern


def _deliver(regions: MotoRegions, notifications: IotNotifications) -> None:
    """What AWS would carry: registry events through the topic rule,
    CloudTrail events that match the EventBridge rule through the recorder."""
    registry, cloudtrail = notifications.take()
    for message in registry:
        regions.publish(PRIMARY, message)
    for event in cloudtrail:
        if matches(_pattern(), event):
            regions.record_management(PRIMARY, event)


def _policy(version: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": f"arn:aws:iot:{PRIMARY}:{ACCOUNT}:client/{version}",
                }
            ],
        }
    )


def _status(regions: MotoRegions, region: str, certificate_id: str) -> str:
    described = regions.clients[region].iot.describe_certificate(certificateId=certificate_id)
    return described["certificateDescription"]["status"]


def _principals(regions: MotoRegions, region: str, thing: str) -> set[str]:
    found = regions.clients[region].iot.list_thing_principals(thingName=thing)["principals"]
    return {arn.rsplit("/", 1)[1] for arn in found}


def test_the_template_rule_matches_exactly_the_calls_the_worker_replicates() -> None:
    assert _pattern()["detail"]["eventName"] == list(MANAGEMENT_EVENT_NAMES)


def test_attach_after_create_rotation_revocation_and_policy_versions(
    regions: MotoRegions,
) -> None:
    iot = regions.clients[PRIMARY].iot
    notifications = IotNotifications(PRIMARY).install(iot)

    # The usual provisioning order: the thing's registry event is replicated
    # before the certificate is even attached.
    iot.create_thing(thingName="dev-m")
    _deliver(regions, notifications)
    regions.replicate(SECONDARY)
    assert _principals(regions, SECONDARY, "dev-m") == set()

    old = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_policy(policyName="dev-m-policy", policyDocument=_policy("v1"))
    iot.attach_policy(policyName="dev-m-policy", target=old["certificateArn"])
    iot.attach_thing_principal(thingName="dev-m", principal=old["certificateArn"])
    _deliver(regions, notifications)
    assert regions.replicate(SECONDARY).failed == 0
    assert _principals(regions, SECONDARY, "dev-m") == {old["certificateId"]}
    secondary = regions.clients[SECONDARY].iot
    target_arn = f"arn:aws:iot:{SECONDARY}:{ACCOUNT}:cert/{old['certificateId']}"
    policies = secondary.list_attached_policies(target=target_arn)["policies"]
    assert [p["policyName"] for p in policies] == ["dev-m-policy"]

    # Rotation: a new certificate attached, the old one detached and revoked.
    new = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName="dev-m-policy", target=new["certificateArn"])
    iot.attach_thing_principal(thingName="dev-m", principal=new["certificateArn"])
    iot.detach_thing_principal(thingName="dev-m", principal=old["certificateArn"])
    iot.update_certificate(certificateId=old["certificateId"], newStatus="REVOKED")
    # A policy change: a new default version.
    iot.create_policy_version(
        policyName="dev-m-policy", policyDocument=_policy("v2"), setAsDefault=True
    )
    _deliver(regions, notifications)
    report = regions.replicate(SECONDARY, replay=True)
    assert report.failed == 0, regions.clients[SECONDARY].dynamodb.scan(TableName=TABLES.errors)

    assert _principals(regions, SECONDARY, "dev-m") == {new["certificateId"]}
    assert _status(regions, SECONDARY, old["certificateId"]) == "REVOKED"
    assert _status(regions, SECONDARY, new["certificateId"]) == "ACTIVE"
    document = secondary.get_policy(policyName="dev-m-policy")["policyDocument"]
    assert f"arn:aws:iot:{SECONDARY}:{ACCOUNT}:client/v2" in document


def test_a_revocation_whose_event_is_lost_is_reconciled(regions: MotoRegions) -> None:
    iot = regions.clients[PRIMARY].iot
    notifications = IotNotifications(PRIMARY).install(iot)
    iot.create_thing(thingName="dev-r")
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="dev-r", principal=cert["certificateArn"])
    _deliver(regions, notifications)
    regions.replicate(SECONDARY)
    assert _status(regions, SECONDARY, cert["certificateId"]) == "ACTIVE"

    # Best effort: CloudTrail's events for these never arrive.
    iot.update_certificate(certificateId=cert["certificateId"], newStatus="REVOKED")
    spare = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName="dev-r", principal=spare["certificateArn"])
    notifications.take()

    report = reconcile(
        regions.clients[PRIMARY],
        regions.clients[SECONDARY],
        mode=regions.mode,
        applied_table=TABLES.applied,
        things_per_run=1,
    )
    assert report.errors == {}
    assert _status(regions, SECONDARY, cert["certificateId"]) == "REVOKED"
    assert _principals(regions, SECONDARY, "dev-r") == {
        cert["certificateId"],
        spare["certificateId"],
    }


def test_the_fleet_pass_resumes_where_the_last_run_stopped(regions: MotoRegions) -> None:
    iot = regions.clients[PRIMARY].iot
    for index in range(5):
        iot.create_thing(thingName=f"dev-f{index}")
    runs = []
    for _ in range(3):
        report = reconcile(
            regions.clients[PRIMARY],
            regions.clients[SECONDARY],
            mode=regions.mode,
            applied_table=TABLES.applied,
            things_per_run=2,
        )
        runs.append((report.things_checked, report.fleet_pass_complete))
    assert runs == [(2, False), (2, False), (1, True)]


def test_failed_calls_and_unrelated_calls_are_not_recorded() -> None:
    event = {
        "source": "aws.iot",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventSource": "iot.amazonaws.com",
            "eventName": "UpdateCertificate",
            "errorCode": "ResourceNotFoundException",
        },
    }
    assert not matches(_pattern(), event)
    del event["detail"]["errorCode"]  # type: ignore[attr-defined]
    assert matches(_pattern(), event)
    event["detail"]["eventName"] = "CreateThing"  # type: ignore[index]
    assert not matches(_pattern(), event)


def test_a_reconciliation_run_stays_within_its_call_budget(regions: MotoRegions) -> None:
    """Counted, not timed: the registry throttles per API, so the calls per
    thing bound how many things a 15-minute run can check (README)."""
    THINGS = 8  # noqa: N806 - moto makes a key pair per certificate, slowly
    iot = regions.clients[PRIMARY].iot
    iot.create_policy(policyName="fleet", policyDocument=_policy("fleet"))
    for index in range(THINGS):
        name = f"dev-b{index}"
        iot.create_thing(thingName=name)
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_policy(policyName="fleet", target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        regions.publish(PRIMARY, ev.thing(name, "CREATED"))
    assert regions.replicate(SECONDARY).failed == 0
    calls: Counter[str] = Counter()
    for region in (PRIMARY, SECONDARY):
        regions.clients[region].iot.meta.events.register(
            "before-call.iot.*", lambda model, **_: calls.update([model.name])
        )
    report = reconcile(
        regions.clients[PRIMARY],
        regions.clients[SECONDARY],
        mode=regions.mode,
        applied_table=TABLES.applied,
        things_per_run=THINGS,
    )
    assert report.things_checked == THINGS and report.errors == {}
    per_thing = {name: count / THINGS for name, count in calls.items() if count >= THINGS}
    assert per_thing == {
        "DescribeThing": 2,  # target, then source
        "ListThingPrincipals": 2,
        "ListAttachedPolicies": 2,
        "DescribeCertificate": 1,
    }
    assert calls["GetPolicy"] <= 4  # each shared policy once per run, not per thing
