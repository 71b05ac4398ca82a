"""Documented AWS behaviours that moto does not model, injected at the API boundary.

Each class registers botocore event hooks on a *real* client: the call goes
through boto3's whole path (parameter validation, serialising, the hooks,
moto), and where AWS would answer differently from moto, the hook answers
what AWS documents, in AWS's error shape, so botocore raises the same
`ClientError` the code would get from AWS. Nothing here replaces the code
under test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders


def aws_error(code: str, message: str, status: int) -> tuple[AWSResponse, dict[str, Any]]:
    """What a `before-call` hook returns to make botocore raise AWS's error."""
    http = AWSResponse(url="https://iot.amazonaws.com", status_code=status, headers=HTTPHeaders(), raw=None)
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
