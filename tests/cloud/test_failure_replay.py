"""Failures that keep their records, and the replay that puts them back.

A topic rule whose PutItem fails (throttled, an item over 400 KB) sends its
error action message, with the original payload, to the failed-events
bucket; a stream batch the worker fails after Lambda's retries goes to the
same bucket with its records (S3 on-failure destination), or, in the
metadata-only shape SQS gets, is read back from the stream by its range.
`replay_failed_events` writes them again into the replica, and the worker
applies them as any other record.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
from botocore.config import Config

from iotdr.cloud.records import stream_records
from iotdr.cloud.replay import replay_failed_events
from iotdr.cloud.worker import Tables, Worker
from tests.cloud import aws_events as ev
from tests.cloud.aws_behaviour import aws_error
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions
from tests.cloud.template_reader import resources_of

BUCKET = "iotdr-failed-events"


def _bucket(region: str) -> Any:
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":  # the one region that refuses a LocationConstraint
        s3.create_bucket(Bucket=BUCKET)
    else:
        s3.create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
        )
    return s3


def _streams(region: str) -> Any:
    return boto3.client(
        "dynamodbstreams", region_name=region, config=Config(account_id_endpoint_mode="disabled")
    )


def _replay(regions: MotoRegions, region: str, s3: Any) -> Any:
    return replay_failed_events(
        s3=s3,
        bucket=BUCKET,
        dynamodb=regions.clients[region].dynamodb,
        table=TABLES.replication,
        region=region,
        now_s=1_700_000_000,
        streams=_streams(region),
    )


def _thing_names(regions: MotoRegions, region: str) -> set[str]:
    return {t["thingName"] for t in regions.clients[region].iot.list_things()["things"]}


def test_every_replication_rule_has_an_error_action_into_the_bucket() -> None:
    rules = resources_of("region.yaml", "AWS::IoT::TopicRule")
    assert len(rules) >= 7  # six registry event families and the shadows (and JITR)
    for name, rule in rules.items():
        error = rule["Properties"]["TopicRulePayload"]["ErrorAction"]["S3"]
        assert error["BucketName"] == {"Ref": "FailedEventsBucket"}, name
    mapping = resources_of("region.yaml", "AWS::Lambda::EventSourceMapping")["WorkerStream"]
    properties = mapping["Properties"]
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "GetAtt": "FailedEventsBucket.Arn"
    }
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_a_rule_error_is_replayed_into_the_pipeline(regions: MotoRegions) -> None:
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-throttled")
    topic, payload = ev.thing("dev-throttled", "CREATED", attributes={"fw": "3"})
    s3 = _bucket(PRIMARY)
    # The error action message (rule-error-handling.html): the rule's PutItem was throttled.
    message = {
        "ruleName": "ThingEventsRule",
        "topic": topic,
        "cloudwatchTraceId": "e1c1a4c4-9e11-4f4d-9c4b-7f0e2b1f2c3d",
        "clientId": "iotdr-registry",
        "base64OriginalPayload": base64.b64encode(json.dumps(payload).encode()).decode(),
        "failures": [
            {
                "failedAction": "DynamoDBv2Action",
                "failedResource": TABLES.replication,
                "errorMessage": "Failed to put item. ProvisionedThroughputExceededException",
            }
        ],
    }
    s3.put_object(Bucket=BUCKET, Key="rule-errors/1.json", Body=json.dumps(message).encode())
    s3.put_object(Bucket=BUCKET, Key="rule-errors/2.json", Body=b'{"something": "else"}')

    report = _replay(regions, PRIMARY, s3)
    assert (report.objects, report.items) == (2, 1)
    assert list(report.left) == ["rule-errors/2.json"]  # left in place, reported
    # The global table carries the replayed item to the secondary's replica.
    for item in regions.clients[PRIMARY].dynamodb.scan(TableName=TABLES.replication)["Items"]:
        regions.clients[SECONDARY].dynamodb.put_item(TableName=TABLES.replication, Item=item)
    assert regions.replicate(SECONDARY).applied == 1
    thing = regions.clients[SECONDARY].iot.describe_thing(thingName="dev-throttled")
    assert thing["attributes"] == {"fw": "3"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [
        "rule-errors/2.json"
    ]


def _failing_worker(regions: MotoRegions) -> Worker:
    """The secondary's worker while its error table cannot be written
    (DynamoDB answers ResourceNotFoundException for a table it cannot find)."""
    dynamodb = regions.clients[SECONDARY].dynamodb

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if TABLES.errors in str(params.get("body", b"")):
            return aws_error("ResourceNotFoundException", "Requested resource not found", 400)
        return None

    dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", refuse)
    return Worker(
        local=regions.clients[SECONDARY],
        peer=regions.clients[PRIMARY],
        tables=Tables(TABLES.replication, TABLES.applied, TABLES.errors),
        default_active_region=PRIMARY,
        patience=regions.patience,
    )


def test_a_failed_batch_is_reported_and_replayed_with_or_without_its_payload(
    regions: MotoRegions,
) -> None:
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-ok")
    regions.publish(PRIMARY, ev.thing("dev-ok", "CREATED"))
    regions.publish(PRIMARY, ev.membership("grp", "dev-late", "ADDED"))  # fails: no such thing
    regions.publish(PRIMARY, ev.thing("dev-after", "CREATED"))
    batch = regions.drain(SECONDARY)
    records = batch["Records"]
    sequences = [r["dynamodb"]["SequenceNumber"] for r in records]

    report = _failing_worker(regions).process_stream(stream_records(batch))
    assert report.applied == 1
    assert report.unrecorded_sequence == sequences[1]  # Lambda retries from here

    # Lambda gives up on [membership, dev-after]; the S3 destination keeps the records.
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-late")
    regions.clients[PRIMARY].iot.create_thing(thingName="dev-after")
    regions.clients[SECONDARY].iot.create_thing(thingName="dev-late")
    regions.clients[SECONDARY].iot.create_thing_group(thingGroupName="grp")
    failed = records[1:]
    info = {
        "shardId": failed[0]["dynamodb"].get("ShardId") or _shard(regions),
        "startSequenceNumber": sequences[1],
        "endSequenceNumber": sequences[2],
        "batchSize": 2,
        "streamArn": _stream_arn(regions),
    }
    context = {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11}
    with_payload = {"requestContext": context, "DDBStreamBatchInfo": info, "version": "1.0"}
    with_payload["payload"] = json.dumps({"Records": failed}, default=str)
    metadata_only = {"requestContext": context, "DDBStreamBatchInfo": info, "version": "1.0"}
    s3 = _bucket(SECONDARY)
    s3.put_object(Bucket=BUCKET, Key="aws/lambda/a.json", Body=json.dumps(with_payload).encode())
    s3.put_object(Bucket=BUCKET, Key="aws/lambda/b.json", Body=json.dumps(metadata_only).encode())

    replayed = _replay(regions, SECONDARY, s3)
    assert (replayed.objects, replayed.items, replayed.left) == (2, 4, {})
    again = regions.replicate(SECONDARY)
    assert again.failed == 0 and again.applied == 4
    groups = regions.clients[SECONDARY].iot.list_thing_groups_for_thing(thingName="dev-late")
    assert [g["groupName"] for g in groups["thingGroups"]] == ["grp"]
    assert "dev-after" in _thing_names(regions, SECONDARY)


def _stream_arn(regions: MotoRegions) -> str:
    table = regions.clients[SECONDARY].dynamodb.describe_table(TableName=TABLES.replication)
    return table["Table"]["LatestStreamArn"]


def _shard(regions: MotoRegions) -> str:
    shards = _streams(SECONDARY).describe_stream(StreamArn=_stream_arn(regions))
    return str(shards["StreamDescription"]["Shards"][0]["ShardId"])
