"""The Lambda entry points as Lambda calls them: environment in, event in,
against two moto regions (the wiring the templates set up)."""

from __future__ import annotations

import pytest

from iotdr.cloud import lambda_entry
from tests.cloud import aws_events as ev
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, regions: MotoRegions) -> MotoRegions:
    for key, value in {
        "AWS_REGION": SECONDARY,
        "AWS_DEFAULT_REGION": SECONDARY,  # Lambda sets both to the function's region
        "PEER_REGION": PRIMARY,
        "PRIMARY_REGION": PRIMARY,
        "REPLICATION_TABLE": TABLES.replication,
        "APPLIED_TABLE": TABLES.applied,
        "ERROR_TABLE": TABLES.errors,
        "CERTIFICATE_MODE": "complete",
        "RECONCILE_THINGS_PER_RUN": "10",
    }.items():
        monkeypatch.setenv(key, value)
    return regions


def test_the_worker_answers_in_the_batch_item_failures_shape(env: MotoRegions) -> None:
    env.clients[PRIMARY].iot.create_thing(thingName="dev-l")
    env.publish(PRIMARY, ev.thing("dev-l", "CREATED"))
    answer = lambda_entry.replication_handler(env.drain(SECONDARY), None)
    assert answer["batchItemFailures"] == [] and answer["applied"] == 1


def test_the_recorder_and_the_reconciler(env: MotoRegions) -> None:
    event = {
        "source": "aws.iot",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventSource": "iot.amazonaws.com",
            "eventName": "UpdateCertificate",
            "eventTime": "2026-11-29T23:40:05Z",
            "requestParameters": {"certificateId": "ab" * 32, "newStatus": "REVOKED"},
        },
    }
    answer = lambda_entry.management_event_handler(event, None)
    assert answer["topic"] == "iotdr/management/UpdateCertificate"
    items = env.clients[SECONDARY].dynamodb.scan(TableName=TABLES.replication)["Items"]
    assert [i["certificateId"]["S"] for i in items if "certificateId" in i] == ["ab" * 32]

    assert lambda_entry.reconcile_handler({}, None)["errors"] == 0  # the follower reconciles
    env.set_active(SECONDARY)
    assert "skipped" in lambda_entry.reconcile_handler({}, None)  # the active region does not
