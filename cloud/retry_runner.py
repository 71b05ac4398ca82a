"""The scheduled retry runner: applies failed messages again.

The reference's runner called its function with the wrong arguments and
never succeeded; this one goes through exactly the worker's path
(`Worker.process_message`). A message that succeeds, or is now skipped
(stale, or no longer from the active region), leaves the error table; one
that fails `max_attempts` times goes to the dead-letter queue and leaves it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.errors import CloudError
from iotdr.cloud.worker import Worker, message_from_json

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sqs.client import SQSClient

log = logging.getLogger(__name__)


@dataclass
class RetryReport:
    resolved: int = 0
    still_failing: int = 0
    dead_lettered: int = 0


def run_retries(
    worker: Worker,
    *,
    dynamodb: DynamoDBClient,
    error_table: str,
    sqs: SQSClient | None = None,
    dead_letter_queue_url: str | None = None,
    max_attempts: int = 5,
) -> RetryReport:
    report = RetryReport()
    active = worker.active_region()
    for page in dynamodb.get_paginator("scan").paginate(TableName=error_table):
        for item in page.get("Items", []):
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
    return report
