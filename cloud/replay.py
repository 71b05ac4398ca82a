"""`iotdr cloud replay`: puts failed replication records back into the pipeline.

Two kinds of failure land in a region's failed-events bucket
(templates/region.yaml, output `FailedEventsBucket`):

- a topic rule's error action (the DynamoDBv2 PutItem was throttled, or the
  item was over 400 KB): the error action message carries the rule's topic
  and the original MQTT payload in `base64OriginalPayload`
  (https://docs.aws.amazon.com/iot/latest/developerguide/rule-error-handling.html);
- a stream batch the worker Lambda failed after its retries: the on-failure
  destination is S3 because "for Amazon S3 destinations, Lambda also sends
  the entire invocation record along with the metadata"
  (https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html),
  where SQS and SNS get only the shard and sequence range, and stream
  records live 24 hours. When an object has no payload, the records are
  read back from the stream by that range while the stream still holds them.

Replay writes each record's item again into the region's replica of the
replication table under a new key, so it is a fresh INSERT for the same
worker, with the same ordering and idempotence; then it deletes the object.
An object it cannot replay is left in place and reported.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from iotdr.cloud.errors import CloudError
from iotdr.cloud.records import CONTROL_PREFIX, rule_item

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_dynamodbstreams.client import DynamoDBStreamsClient
    from types_boto3_s3.client import S3Client

# Where the rules' error actions write (the keys are ours; Lambda picks its own).
RULE_ERROR_PREFIX = "rule-errors/"
JITR_ERROR_PREFIX = "jitr-errors/"  # not replication records: left for the operator


class ReplayError(CloudError):
    """An object in the failed-events bucket that cannot be replayed."""


@dataclass
class ReplayReport:
    objects: int = 0
    items: int = 0
    left: dict[str, str] = field(default_factory=dict)  # object key -> why it was left


def items_of_rule_error(
    message: Mapping[str, Any], *, region: str, now_s: int
) -> list[dict[str, Any]]:
    """The item the rule would have written, from its error action message."""
    try:
        topic = str(message["topic"])
        payload = json.loads(base64.b64decode(message["base64OriginalPayload"]))
    except (KeyError, ValueError) as exc:
        raise ReplayError(f"not a topic rule error message: {exc!r}") from exc
    if not isinstance(payload, dict):
        raise ReplayError("the original payload is not a JSON object")
    return [rule_item(topic, payload, origin=region, now_s=now_s)]


def images_of_failed_batch(
    record: Mapping[str, Any], streams: DynamoDBStreamsClient | None
) -> list[dict[str, Any]]:
    """New images (DynamoDB JSON) of a failed batch's inserts and modifications."""
    payload = record.get("payload")
    if isinstance(payload, str):
        payload = json.loads(payload)
    if isinstance(payload, dict) and "Records" in payload:
        records = payload["Records"]
    else:
        records = list(_read_range(record.get("DDBStreamBatchInfo") or {}, streams))
    return [
        r["dynamodb"]["NewImage"]
        for r in records
        if r.get("eventName") in ("INSERT", "MODIFY") and r.get("dynamodb", {}).get("NewImage")
    ]


def _read_range(info: Mapping[str, Any], streams: DynamoDBStreamsClient | None) -> Iterator[Any]:
    """The batch's records, read back from the stream by its sequence range."""
    if streams is None or not info.get("shardId"):
        raise ReplayError("the invocation record holds no records and no stream range")
    start, end = str(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=start,
        )["ShardIterator"]
    except ClientError as exc:
        raise ReplayError(
            f"the stream no longer holds the batch ({exc.response['Error']['Code']});"
            " stream records live 24 hours"
        ) from exc
    while iterator:
        page = streams.get_records(ShardIterator=iterator)
        for record in page["Records"]:
            if int(record["dynamodb"]["SequenceNumber"]) > end:
                return
            yield record
        if not page["Records"]:
            return
        iterator = page.get("NextShardIterator", "")


def replay_failed_events(
    *,
    s3: S3Client,
    bucket: str,
    dynamodb: DynamoDBClient,
    table: str,
    region: str,
    now_s: int,
    streams: DynamoDBStreamsClient | None = None,
) -> ReplayReport:
    report = ReplayReport()
    serializer = TypeSerializer()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if key.startswith(JITR_ERROR_PREFIX):
                continue
            report.objects += 1
            try:
                body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                if "base64OriginalPayload" in body:
                    images = [
                        {k: serializer.serialize(v) for k, v in item.items()}
                        for item in items_of_rule_error(body, region=region, now_s=now_s)
                    ]
                elif "DDBStreamBatchInfo" in body or "payload" in body:
                    images = images_of_failed_batch(body, streams)
                else:
                    raise ReplayError("neither a rule error nor a failed stream batch")
            except (ReplayError, ValueError) as exc:
                report.left[key] = str(exc)
                continue
            for image in images:
                if image.get("pk", {}).get("S", "").startswith(CONTROL_PREFIX):
                    continue  # the active-region marker is not a change to replay
                dynamodb.put_item(TableName=table, Item={**image, "pk": {"S": str(uuid.uuid4())}})
                report.items += 1
            s3.delete_object(Bucket=bucket, Key=key)
    return report
