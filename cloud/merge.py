"""Pure replication rules: what to write in the target so it matches the source.

Every function compares the desired state (from the event) with the
target's current state and returns the smallest change, or nothing when they
already match. Applying nothing is what makes replayed stream records
harmless, and it means an applied change produces at most one echo event.

Which events a region applies at all (the loop prevention) is decided by
`replication_decision`: every rule message carries the region it was seen in
(its origin), and only changes from the region that is currently active are
applied. While the primary is active the secondary follows it; after a
failover the operator (or automation) marks the secondary active and the
primary follows it, catching up on everything done during the outage when it
comes back. Echoes of applied changes always come from the inactive region,
so they are dropped and no change goes round in a loop.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any


class Decision(enum.Enum):
    APPLY = "apply"
    SKIP_OWN_REGION = "skip: recorded in this region"
    SKIP_INACTIVE_ORIGIN = "skip: recorded in the inactive region (an echo or a standby change)"
    SKIP_STALE = "skip: older than what was applied already"


def replication_decision(*, origin: str, local_region: str, active_region: str) -> Decision:
    if origin == local_region:
        return Decision.SKIP_OWN_REGION
    if origin != active_region:
        return Decision.SKIP_INACTIVE_ORIGIN
    return Decision.APPLY


def ordering_decision(*, event_order: int, applied_order: int | None) -> Decision:
    """An older event never overwrites a newer one. An equal one is applied
    again: application is idempotent, and distinct registry events can share
    a millisecond."""
    if applied_order is not None and event_order < applied_order:
        return Decision.SKIP_STALE
    return Decision.APPLY


def attribute_patch(desired: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """Attributes to send with `merge: true` so `current` becomes `desired`.

    An empty value removes an attribute (UpdateThing, AttributePayload.merge:
    https://docs.aws.amazon.com/iot/latest/apireference/API_AttributePayload.html).
    Merging, rather than replacing the whole map, leaves alone attributes
    nobody changed, so a concurrent edit of another attribute survives.
    """
    patch = {key: value for key, value in desired.items() if current.get(key) != value}
    patch.update({key: "" for key in current if key not in desired})
    return patch


def shadow_state_patch(desired: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A shadow update document body that turns `current` state into `desired`.

    Shadow updates merge, and a null removes a key (Device Shadow service
    documents: "Deleting properties"); so keys missing from `desired` are sent
    as null, recursively, and equal subtrees are not sent at all.
    """
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = shadow_state_patch(value, old)
            if sub:
                patch[key] = sub
        elif old != value or key not in current:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
_ARN_REGION = re.compile(rf"(arn:aws[a-z-]*:[a-z0-9-]+:)({_REGION})(:)")


def rewrite_policy_regions(document: str, *, source_region: str, target_region: str) -> str:
    """The policy document with the source region in ARNs replaced by the target's.

    A policy naming `arn:aws:iot:us-east-1:...:client/x` allows nothing in
    us-west-2 (IAM/IoT policy ARNs are regional), so the secondary needs the
    same policy pointing at itself. ARNs of other regions are left alone:
    they were written on purpose. The document's JSON formatting is kept.
    """
    if source_region == target_region:
        return document

    def swap(match: re.Match[str]) -> str:
        region = match.group(2)
        if region != source_region:
            return match.group(0)
        return f"{match.group(1)}{target_region}{match.group(3)}"

    return _ARN_REGION.sub(swap, document)


def same_policy(left: str, right: str) -> bool:
    """Policy documents compare as JSON, not as text: AWS reformats them."""
    try:
        return bool(json.loads(left) == json.loads(right))
    except ValueError:
        return left == right
