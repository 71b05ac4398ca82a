"""Deletes after an asynchronous detach (AWS behaviour injected: aws_behaviour.py).

In AWS, DeleteThing right after DetachThingPrincipal fails for a few
seconds with InvalidRequestException. The worker, check-deployment's
clean-up and destroy wait for the detach with backoff; a detach that never
settles within the bound still ends in the error table, never in a hang.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from iotdr.cloud.propagation import Patience, still_attached, until_detached
from tests.cloud import aws_events as ev
from tests.cloud.aws_behaviour import DetachPropagation
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions


def _device_in_both(regions: MotoRegions, name: str) -> None:
    iot = regions.clients[PRIMARY].iot
    iot.create_thing(thingName=name)
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
    regions.publish(PRIMARY, ev.thing(name, "CREATED"))
    assert regions.replicate(SECONDARY).applied == 1
    assert regions.clients[SECONDARY].iot.list_thing_principals(thingName=name)["principals"]


def test_the_worker_waits_for_the_detach_before_deleting(regions: MotoRegions) -> None:
    _device_in_both(regions, "dev-del")
    propagation = DetachPropagation(calls_to_settle=3).install(regions.clients[SECONDARY].iot)

    regions.publish(PRIMARY, ev.thing("dev-del", "DELETED"))
    report = regions.replicate(SECONDARY)

    assert (report.applied, report.failed) == (1, 0)
    assert propagation.rejected == 3  # AWS's answer was seen, and waited out
    assert regions.waits == [0.5, 1.0, 2.0]  # exponential backoff
    with pytest.raises(ClientError):
        regions.clients[SECONDARY].iot.describe_thing(thingName="dev-del")
    assert regions.clients[SECONDARY].dynamodb.scan(TableName=TABLES.errors)["Count"] == 0


def test_a_detach_that_never_settles_goes_to_the_error_table(regions: MotoRegions) -> None:
    _device_in_both(regions, "dev-stuck")
    DetachPropagation(calls_to_settle=1000).install(regions.clients[SECONDARY].iot)

    regions.publish(PRIMARY, ev.thing("dev-stuck", "DELETED"))
    report = regions.replicate(SECONDARY)

    assert report.failed == 1
    assert len(regions.waits) == Patience().max_attempts - 1  # bounded, then given up
    errors = regions.clients[SECONDARY].dynamodb.scan(TableName=TABLES.errors)["Items"]
    assert "still attached" in errors[0]["error"]["S"]


def test_other_errors_are_not_retried(regions: MotoRegions) -> None:
    waits: list[float] = []
    iot = regions.clients[PRIMARY].iot
    with pytest.raises(ClientError) as raised:
        until_detached(
            lambda: iot.describe_thing(thingName="never-created"),
            Patience(sleep=waits.append),
        )
    assert not still_attached(raised.value)
    assert waits == []
