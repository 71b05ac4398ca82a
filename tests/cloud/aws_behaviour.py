"""Documented AWS behaviours that moto does not model, injected at the API boundary.

Each class registers botocore event hooks on a *real* client: the call goes
through boto3's whole path (parameter validation, serialising, the hooks,
moto), and where AWS would answer differently from moto, the hook answers
what AWS documents, in AWS's error shape, so botocore raises the same
`ClientError` the code would get from AWS. Nothing here replaces the code
under test.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders


def aws_error(code: str, message: str, status: int) -> tuple[AWSResponse, dict[str, Any]]:
    """What a `before-call` hook returns to make botocore raise AWS's error."""
    http = AWSResponse(
        url="https://iot.amazonaws.com", status_code=status, headers=HTTPHeaders(), raw=None
    )
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return http, parsed


@dataclass
class DetachPropagation:
    """DetachThingPrincipal is asynchronous in AWS.

    API reference, DetachThingPrincipal: "This call is asynchronous. It might
    take several seconds for the detachment to propagate." Until it has,
    DeleteThing fails with InvalidRequestException ("Cannot delete. Thing X
    is still attached to one or more principals", the message moto also
    uses for a thing that really has principals). moto detaches at once, so
    this hook keeps the detach "propagating" for the next `calls_to_settle`
    DeleteThing calls on that thing, counted rather than timed so the test
    never depends on the machine's speed.
    """

    calls_to_settle: int = 2
    propagating: Counter[str] = field(default_factory=Counter)
    rejected: int = 0

    def install(self, iot: Any) -> DetachPropagation:
        iot.meta.events.register("provide-client-params.iot.DetachThingPrincipal", self._detached)
        iot.meta.events.register("before-call.iot.DeleteThing", self._delete)
        return self

    def _detached(self, params: dict[str, Any], **_: Any) -> None:
        self.propagating[str(params["thingName"])] = self.calls_to_settle

    def _delete(self, params: dict[str, Any], **_: Any) -> Any:
        name = _thing_name_of(params)
        if self.propagating[name] > 0:
            self.propagating[name] -= 1
            self.rejected += 1
            return aws_error(
                "InvalidRequestException",
                f"Cannot delete. Thing {name} is still attached to one or more principals",
                400,
            )
        return None


def _thing_name_of(params: dict[str, Any]) -> str:
    """DeleteThing carries the name in its URI: /things/{thingName}."""
    return str(params["url_path"]).rsplit("/", 1)[-1].split("?", 1)[0]


# Registry events AWS IoT publishes for thing calls (registry-events.html);
# the other IoT write calls publish none and reach only CloudTrail.
_THING_REGISTRY_EVENTS = {
    "CreateThing": "CREATED",
    "UpdateThing": "UPDATED",
    "DeleteThing": "DELETED",
}
_READ_ONLY = ("Describe", "List", "Get")


@dataclass
class IotNotifications:
    """What AWS IoT and CloudTrail emit for the calls made on a client.

    moto emits nothing. For each successful call this records what AWS
    documents: a registry event (MQTT, `$aws/events/thing/...`) for
    CreateThing/UpdateThing/DeleteThing, and for every write call the
    "AWS API Call via CloudTrail" event CloudTrail sends to EventBridge
    (eb-service-event-cloudtrail.html), in CloudTrail's record format
    (cloudtrail-event-reference-record-contents.html). Which of those an
    EventBridge rule delivers is for the rule's pattern to decide
    (`matches`), read from the template.
    """

    region: str
    registry: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cloudtrail: list[dict[str, Any]] = field(default_factory=list)
    clock_ms: int = 1_800_000_000_000

    def install(self, iot: Any) -> IotNotifications:
        iot.meta.events.register("provide-client-params.iot.*", self._remember)
        iot.meta.events.register("after-call.iot.*", self._emit)
        return self

    def take(self) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        registry, cloudtrail = self.registry, self.cloudtrail
        self.registry, self.cloudtrail = [], []
        return registry, cloudtrail

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["iotdr_params"] = dict(params)

    def _emit(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        if http_response.status_code >= 300 or model.name.startswith(_READ_ONLY):
            return
        params = context.get("iotdr_params", {})
        self.clock_ms += 1000  # CloudTrail's eventTime has one-second resolution
        if model.name in _THING_REGISTRY_EVENTS:
            operation = _THING_REGISTRY_EVENTS[model.name]
            payload = {
                "eventType": "THING_EVENT",
                "eventId": f"e-{self.clock_ms}",
                "timestamp": self.clock_ms,
                "operation": operation,
                "accountId": "123456789012",
                "thingName": params["thingName"],
                "thingTypeName": params.get("thingTypeName"),
                "attributes": params.get("attributePayload", {}).get("attributes", {}),
            }
            self.registry.append(
                (f"$aws/events/thing/{params['thingName']}/{operation.lower()}", payload)
            )
        event_time = datetime.datetime.fromtimestamp(self.clock_ms / 1000, datetime.UTC)
        self.cloudtrail.append(
            {
                "version": "0",
                "detail-type": "AWS API Call via CloudTrail",
                "source": "aws.iot",
                "account": "123456789012",
                "region": self.region,
                "detail": {
                    "eventVersion": "1.08",
                    "eventTime": event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "eventSource": "iot.amazonaws.com",
                    "eventName": model.name,
                    "awsRegion": self.region,
                    # CloudTrail leaves secrets out (a policy document stays in).
                    "requestParameters": {
                        k: v for k, v in params.items() if k not in ("certificatePem",)
                    },
                    "responseElements": None,
                    "readOnly": False,
                    "eventType": "AwsApiCall",
                    "managementEvent": True,
                    "eventCategory": "Management",
                },
            }
        )


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge pattern matching, for the forms the templates use: lists
    of values and `{"exists": false}` (eb-event-patterns.html)."""
    for key, wanted in pattern.items():
        if isinstance(wanted, dict):
            if not isinstance(event.get(key), dict) or not matches(wanted, event[key]):
                return False
            continue
        for option in wanted:
            if isinstance(option, dict) and option == {"exists": False}:
                if key not in event:
                    break
            elif event.get(key) == option:
                break
        else:
            return False
    return True


@dataclass
class CaAutoRegistration:
    """DescribeCACertificate's `autoRegistrationStatus`, which moto does not keep.

    API reference: RegisterCACertificate `allowAutoRegistration` "Allows
    this CA certificate to be used for auto registration of device
    certificates"; UpdateCACertificate `newAutoRegistrationStatus` (ENABLE |
    DISABLE); DescribeCACertificate returns `autoRegistrationStatus`. The
    hook remembers what the calls set and adds it to the description.
    """

    status: dict[str, str] = field(default_factory=dict)

    def install(self, iot: Any) -> CaAutoRegistration:
        iot.meta.events.register("provide-client-params.iot.*", self._remember)
        iot.meta.events.register("after-call.iot.*", self._apply)
        return self

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["iotdr_ca_params"] = dict(params)

    def _apply(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        if http_response.status_code >= 300:
            return
        params = context.get("iotdr_ca_params", {})
        if model.name == "RegisterCACertificate":
            enabled = params.get("allowAutoRegistration", False)
            self.status[parsed["certificateId"]] = "ENABLE" if enabled else "DISABLE"
        elif model.name == "UpdateCACertificate" and "newAutoRegistrationStatus" in params:
            self.status[params["certificateId"]] = params["newAutoRegistrationStatus"]
        elif model.name == "DescribeCACertificate":
            description = parsed["certificateDescription"]
            description["autoRegistrationStatus"] = self.status.get(
                params["certificateId"], "DISABLE"
            )
