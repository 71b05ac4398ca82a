"""The scheduled retry runner: applies failed messages again.

The reference's runner called its function with the wrong arguments and
never succeeded; this one goes through exactly the worker's path
(`Worker.process_message`). A message that succeeds, or is now skipped
(stale, or no longer from the active region), leaves the error table; one
that fails `max_attempts` times goes to the dead-letter queue and leaves it.

Never two runs at once: the function has reserved concurrency 1 and no
asynchronous retries (templates/region.yaml), and a run first takes a lease
in the error table with a conditional write, so even a manual invocation
during a scheduled run (up to its 900 s timeout) finds it taken and stops.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.errors import CloudError
from iotdr.cloud.records import CONTROL_PREFIX
from iotdr.cloud.worker import Worker, message_from_json

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sqs.client import SQSClient

log = logging.getLogger(__name__)

LEASE_KEY = "control#retry-runner-lease"
LEASE_S = 960  # the function's 900 s timeout and a margin: a crashed run's lease lapses


@dataclass
class RetryReport:
    resolved: int = 0
    still_failing: int = 0
    dead_lettered: int = 0
    already_running: bool = False


def run_retries(
    worker: Worker,
    *,
    dynamodb: DynamoDBClient,
    error_table: str,
    sqs: SQSClient | None = None,
    dead_letter_queue_url: str | None = None,
    max_attempts: int = 5,
    now_s: int | None = None,
) -> RetryReport:
    report = RetryReport()
    now = int(time.time()) if now_s is None else now_s
    owner = uuid.uuid4().hex
    if not _take_lease(dynamodb, error_table, owner, now):
        log.warning("another retry run holds the lease; this one does nothing")
        report.already_running = True
        return report
    try:
        _run(
            worker=worker,
            dynamodb=dynamodb,
            error_table=error_table,
            sqs=sqs,
            dead_letter_queue_url=dead_letter_queue_url,
            max_attempts=max_attempts,
            report=report,
        )
    finally:
        _release_lease(dynamodb, error_table, owner)
    return report


def _take_lease(dynamodb: DynamoDBClient, table: str, owner: str, now: int) -> bool:
    try:
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": LEASE_KEY},
                "owner": {"S": owner},
                "until": {"N": str(now + LEASE_S)},
            },
            ConditionExpression="attribute_not_exists(pk) OR #until < :now",
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues={":now": {"N": str(now)}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _release_lease(dynamodb: DynamoDBClient, table: str, owner: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"pk": {"S": LEASE_KEY}},
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def _run(
    *,
    worker: Worker,
    dynamodb: DynamoDBClient,
    error_table: str,
    sqs: SQSClient | None,
    dead_letter_queue_url: str | None,
    max_attempts: int,
    report: RetryReport,
) -> None:
    active = worker.active_region()
    for page in dynamodb.get_paginator("scan").paginate(TableName=error_table):
        for item in page.get("Items", []):
            if item["pk"]["S"].startswith(CONTROL_PREFIX):
                continue
            message = message_from_json(item["message"]["S"])
            attempts = int(item.get("attempts", {}).get("N", "1"))
            try:
                worker.process_message(message, active_region=active)
            except (CloudError, ClientError, BotoCoreError) as exc:
                if attempts + 1 >= max_attempts and sqs and dead_letter_queue_url:
                    sqs.send_message(
                        QueueUrl=dead_letter_queue_url,
                        MessageBody=json.dumps(
                            {"message": item["message"]["S"], "error": str(exc)[:1000]}
                        ),
                    )
                    dynamodb.delete_item(TableName=error_table, Key={"pk": item["pk"]})
                    report.dead_lettered += 1
                else:
                    worker.record_error(message, exc)
                    report.still_failing += 1
                continue
            dynamodb.delete_item(TableName=error_table, Key={"pk": item["pk"]})
            report.resolved += 1
