"""Recording the IoT API calls that publish no registry event, from CloudTrail.

AWS IoT's registry events cover things, thing types, type associations,
thing groups, memberships and hierarchy only
(https://docs.aws.amazon.com/iot/latest/developerguide/registry-events.html).
Attaching a certificate to a thing, deactivating or revoking it, attaching
a policy or changing a policy's version publishes nothing on MQTT; but
CloudTrail records each as a management event, and "CloudTrail sends ...
AWS API Call via CloudTrail" events to the default EventBridge bus
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html),
"on a best effort basis". An EventBridge rule in each region
(templates/region.yaml, `MANAGEMENT_EVENT_NAMES`) invokes
`record_management_event`, which writes one item per call into the local
replica of the replication table, shaped like a topic rule's item (topic
`iotdr/management/<EventName>`), so the same global table, stream, worker,
ordering, loop prevention, error table and retry runner carry it.

Best effort means an event can be late or missing: the scheduled
reconciliation (reconcile.py) bounds how stale the secondary can get.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer

from iotdr.cloud.errors import EventFormatError
from iotdr.cloud.events import MANAGEMENT_TOPIC_PREFIX
from iotdr.cloud.records import rule_item

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

# The write calls whose effect the secondary needs and no registry event carries.
MANAGEMENT_EVENT_NAMES = (
    "AttachThingPrincipal",
    "DetachThingPrincipal",
    "UpdateCertificate",
    "DeleteCertificate",
    "AttachPolicy",
    "DetachPolicy",
    "AttachPrincipalPolicy",  # deprecated forms of Attach/DetachPolicy, still answered
    "DetachPrincipalPolicy",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "DeletePolicy",
)

# requestParameters worth keeping: names only; the worker re-reads the rest.
_NAMES = ("thingName", "certificateId", "policyName", "target")


def management_payload(detail: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(topic, payload) for the `detail` of an "AWS API Call via CloudTrail" event."""
    name = str(detail.get("eventName", ""))
    if name not in MANAGEMENT_EVENT_NAMES or detail.get("eventSource") != "iot.amazonaws.com":
        raise EventFormatError(f"not a replicated IoT management event: {name!r}")
    if detail.get("errorCode"):
        raise EventFormatError(f"{name} failed ({detail['errorCode']}): nothing changed")
    parameters = dict(detail.get("requestParameters") or {})
    # The deprecated principal forms name the certificate as "principal".
    if (
        "principal" in parameters
        and name != "AttachThingPrincipal"
        and "thingName" not in parameters
    ):
        parameters.setdefault("target", parameters["principal"])
    payload: dict[str, Any] = {key: parameters[key] for key in _NAMES if parameters.get(key)}
    payload["timestamp"] = _milliseconds(str(detail["eventTime"]))
    payload["eventName"] = name
    return f"{MANAGEMENT_TOPIC_PREFIX}{name}", payload


def record_management_event(
    dynamodb: DynamoDBClient, *, table: str, event: Mapping[str, Any], region: str, now_s: int
) -> dict[str, Any]:
    """Writes the item for one EventBridge event into the local replica; returns it."""
    topic, payload = management_payload(event.get("detail") or {})
    item = rule_item(topic, payload, origin=region, now_s=now_s)
    serializer = TypeSerializer()
    dynamodb.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in item.items()})
    return item


def _milliseconds(event_time: str) -> int:
    """CloudTrail's eventTime ("2026-11-29T23:40:05Z") as epoch milliseconds."""
    moment = datetime.datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)
