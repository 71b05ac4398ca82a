"""Replication table items: what a topic rule writes and a stream record carries.

The topic rules (templates/region.yaml) use the DynamoDBv2 action, which
writes each column of the rule's SELECT as one attribute:

    SELECT *, newuuid() AS pk, topic() AS topic, '<region>' AS origin,
           floor(timestamp() / 1000) + <ttl> AS expires FROM ...

So an item is the message payload plus four attributes of ours. `rule_item`
builds exactly that item (the sync tools use it to feed the table as the rule
would), `message_of` takes it apart again, and `items_from_stream_event`
reads a Lambda DynamoDB stream event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

# Items expire two days after they are written (DynamoDB TTL on `expires`):
# long enough for a secondary's worker to catch up after an outage of a day.
DEFAULT_TTL_S = 2 * 24 * 3600
_OURS = ("pk", "topic", "origin", "expires")

# Items other than rule messages (the active-region marker) have this prefix.
CONTROL_PREFIX = "control#"
ACTIVE_REGION_KEY = "control#active-region"


@dataclass(frozen=True, slots=True)
class RuleMessage:
    pk: str
    topic: str
    origin: str
    payload: dict[str, Any]


def rule_item(
    topic: str, payload: Mapping[str, Any], *, origin: str, now_s: int, ttl_s: int = DEFAULT_TTL_S
) -> dict[str, Any]:
    """The item the topic rule writes for `payload` published on `topic` in `origin`."""
    item: dict[str, Any] = _to_dynamo(dict(payload))
    item.update(pk=str(uuid.uuid4()), topic=topic, origin=origin, expires=now_s + ttl_s)
    return item


def message_of(item: Mapping[str, Any]) -> RuleMessage | None:
    """The rule message in an item; None for control items."""
    pk = str(item["pk"])
    if pk.startswith(CONTROL_PREFIX) or "topic" not in item:
        return None
    payload = {key: _from_dynamo(value) for key, value in item.items() if key not in _OURS}
    return RuleMessage(pk=pk, topic=str(item["topic"]), origin=str(item["origin"]), payload=payload)


def items_from_stream_event(event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """New images of the inserted or modified items in a DynamoDB stream event.

    REMOVE records (TTL expiry, cleanup) replicate nothing.
    """
    deserializer = TypeDeserializer()
    for record in event.get("Records", []):
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        image = record["dynamodb"].get("NewImage")
        if image:
            yield {key: deserializer.deserialize(value) for key, value in image.items()}


def stream_records(event: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(sequence number, new image) of the inserted or modified items, for
    reporting batch item failures by sequence number."""
    deserializer = TypeDeserializer()
    for record in event.get("Records", []):
        if record.get("eventName") not in ("INSERT", "MODIFY"):
            continue
        image = record["dynamodb"].get("NewImage")
        if image:
            item = {key: deserializer.deserialize(value) for key, value in image.items()}
            yield str(record["dynamodb"].get("SequenceNumber", "")), item


def _to_dynamo(value: Any) -> Any:
    """DynamoDB takes no floats and no empty strings in keys: numbers become Decimal."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo(v) for v in value]
    return value
