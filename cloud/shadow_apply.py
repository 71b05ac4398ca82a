"""Applies shadow events to the target region (boto3 adapter).

Classic and named shadows alike. The whole `desired` and `reported` state is
replicated (not only `state.reported`), keys removed in the source are
removed in the target, and deletes are replicated. Version ordering is the
worker's job (an older update is never applied after a newer one); here the
target is only made equal to the event's state.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from iotdr.cloud import merge
from iotdr.cloud.events import REPLICA_CLIENT_TOKEN_PREFIX, ShadowDeleted, ShadowEvent

if TYPE_CHECKING:
    from types_boto3_iot_data.client import IoTDataPlaneClient


def _shadow_kwargs(shadow_name: str | None) -> dict[str, str]:
    return {"shadowName": shadow_name} if shadow_name else {}


def read_shadow_state(
    iot_data: IoTDataPlaneClient, thing_name: str, shadow_name: str | None
) -> dict[str, Any] | None:
    """The shadow's desired/reported state, or None when there is no shadow."""
    try:
        response = iot_data.get_thing_shadow(thingName=thing_name, **_shadow_kwargs(shadow_name))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    document = json.loads(response["payload"].read())
    state = document.get("state", {})
    return {key: state[key] for key in ("desired", "reported") if key in state}


class ShadowApplier:
    def __init__(self, *, target: IoTDataPlaneClient, origin: str) -> None:
        self._target = target
        # The target region's shadow rule drops updates with this token, so a
        # replicated update is not recorded again over there.
        self._client_token = f"{REPLICA_CLIENT_TOKEN_PREFIX}:{origin}"

    def apply(self, event: ShadowEvent) -> None:
        if isinstance(event, ShadowDeleted):
            self.delete(event.thing_name, event.shadow_name)
        else:
            self.put_state(event.thing_name, event.shadow_name, event.state)

    def put_state(self, thing_name: str, shadow_name: str | None, state: dict[str, Any]) -> None:
        current = read_shadow_state(self._target, thing_name, shadow_name)
        patch = merge.shadow_state_patch(state, current or {})
        if not patch and current is not None:
            return
        document = {"state": patch or state, "clientToken": self._client_token}
        self._target.update_thing_shadow(
            thingName=thing_name,
            payload=json.dumps(document).encode(),
            **_shadow_kwargs(shadow_name),
        )

    def delete(self, thing_name: str, shadow_name: str | None) -> None:
        try:
            self._target.delete_thing_shadow(thingName=thing_name, **_shadow_kwargs(shadow_name))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
