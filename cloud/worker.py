"""The replication worker: stream records in, registry and shadow changes out.

Runs in each region as the Lambda on its replica's stream (and in the retry
runner, and in tests straight from moto's stream). For each rule message:

1. `replication_decision`: apply only changes recorded in the other region
   while that region is the active one (loop prevention, see merge.py);
2. `ordering_decision` against the last order applied to the same entity in
   this region (the applied table): older events are dropped;
3. apply (registry_apply.py / shadow_apply.py), then raise the entity's
   watermark with a conditional write, so it only ever goes up;
4. a failure goes to the error table with the message, for the retry runner.

Nothing is kept between invocations: every `Worker` is built per call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud import merge
from iotdr.cloud.clients import RegionClients
from iotdr.cloud.errors import CloudError
from iotdr.cloud.events import ShadowDeleted, ShadowUpdated, entity_key, order_of, parse_event
from iotdr.cloud.propagation import Patience
from iotdr.cloud.records import ACTIVE_REGION_KEY, RuleMessage, message_of
from iotdr.cloud.registry_apply import CertificateMode, RegistryApplier
from iotdr.cloud.shadow_apply import ShadowApplier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tables:
    replication: str  # the global table the rules write to
    applied: str  # regional: per-entity watermark of what this region applied
    errors: str  # regional: messages that failed, for the retry runner


@dataclass
class Report:
    applied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    unrecorded_sequence: str | None = None  # the first record neither applied nor recorded

    def skip(self, decision: merge.Decision) -> None:
        self.skipped[decision.name] = self.skipped.get(decision.name, 0) + 1


class Worker:
    def __init__(
        self,
        *,
        local: RegionClients,
        peer: RegionClients,
        tables: Tables,
        default_active_region: str,
        mode: CertificateMode = CertificateMode.COMPLETE,
        patience: Patience | None = None,
    ) -> None:
        self._patience = patience or Patience()
        self._local = local
        self._peer = peer
        self._tables = tables
        self._default_active = default_active_region
        self._mode = mode

    def active_region(self) -> str:
        item = self._local.dynamodb.get_item(
            TableName=self._tables.replication,
            Key={"pk": {"S": ACTIVE_REGION_KEY}},
            ConsistentRead=True,
        ).get("Item")
        return item["region"]["S"] if item and "region" in item else self._default_active

    def process(self, items: Iterable[Mapping[str, Any]]) -> Report:
        report = Report()
        active = self.active_region()
        for item in items:
            self._process_one(item, active, report)
        return report

    def process_stream(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> Report:
        """(sequence number, item) pairs from a stream batch. A failure the
        worker cannot even record (the error table unreachable) stops the
        batch there: `unrecorded_sequence` is what the Lambda handler reports
        as its batch item failure, so Lambda retries from that record on and,
        once its retries are spent, hands the batch to the on-failure
        destination with the records (templates/region.yaml)."""
        report = Report()
        active = self.active_region()
        for sequence, item in records:
            try:
                self._process_one(item, active, report)
            except (ClientError, BotoCoreError) as exc:
                log.error("record %s: could not apply nor record the failure: %s", sequence, exc)
                report.unrecorded_sequence = sequence
                break
        return report

    def _process_one(self, item: Mapping[str, Any], active: str, report: Report) -> None:
        message = message_of(item)
        if message is None:
            return
        try:
            decision = self.process_message(message, active_region=active)
        except (CloudError, ClientError, BotoCoreError) as exc:
            log.warning("replicating %s (%s) failed: %s", message.pk, message.topic, exc)
            self.record_error(message, exc)
            report.failed += 1
            return
        if decision is merge.Decision.APPLY:
            report.applied += 1
        else:
            report.skip(decision)

    def process_message(self, message: RuleMessage, *, active_region: str) -> merge.Decision:
        decision = merge.replication_decision(
            origin=message.origin, local_region=self._local.region, active_region=active_region
        )
        if decision is not merge.Decision.APPLY:
            return decision
        event = parse_event(message.topic, message.payload)
        key, order = entity_key(event), order_of(event)
        decision = merge.ordering_decision(event_order=order, applied_order=self._watermark(key))
        if decision is not merge.Decision.APPLY:
            return decision
        if isinstance(event, ShadowUpdated | ShadowDeleted):
            ShadowApplier(target=self._local.iot_data, origin=message.origin).apply(event)
        else:
            RegistryApplier(
                source=self._peer.iot,
                target=self._local.iot,
                source_region=self._peer.region,
                target_region=self._local.region,
                mode=self._mode,
                patience=self._patience,
            ).apply(event)
        self._raise_watermark(key, order)
        return decision

    def _watermark(self, key: str) -> int | None:
        item = self._local.dynamodb.get_item(
            TableName=self._tables.applied, Key={"pk": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return int(item["order"]["N"]) if item else None

    def _raise_watermark(self, key: str, order: int) -> None:
        try:
            self._local.dynamodb.put_item(
                TableName=self._tables.applied,
                Item={"pk": {"S": key}, "order": {"N": str(order)}},
                ConditionExpression="attribute_not_exists(pk) OR #order < :order",
                ExpressionAttributeNames={"#order": "order"},
                ExpressionAttributeValues={":order": {"N": str(order)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def record_error(self, message: RuleMessage, exc: Exception) -> None:
        self._local.dynamodb.update_item(
            TableName=self._tables.errors,
            Key={"pk": {"S": message.pk}},
            UpdateExpression="SET #m = :m, #e = :e ADD attempts :one",
            ExpressionAttributeNames={"#m": "message", "#e": "error"},
            ExpressionAttributeValues={
                ":m": {"S": json.dumps(_message_json(message))},
                ":e": {"S": str(exc)[:1000]},
                ":one": {"N": "1"},
            },
        )


def _message_json(message: RuleMessage) -> dict[str, Any]:
    return {
        "pk": message.pk,
        "topic": message.topic,
        "origin": message.origin,
        "payload": message.payload,
    }


def message_from_json(text: str) -> RuleMessage:
    data = json.loads(text)
    return RuleMessage(
        pk=data["pk"], topic=data["topic"], origin=data["origin"], payload=data["payload"]
    )
