"""Scheduled reconciliation: bounds how stale the follower region can get.

The management events that carry certificate and policy changes
(management.py) are delivered by CloudTrail "on a best effort basis", so
one can be late or lost. Every `interval` the reconciler in the follower
region (the one that is not active) brings it to the active region's
state with the same applier the worker uses:

1. certificate status, for every certificate the follower has (one paged
   ListCertificates in each region): a revocation or deactivation in the
   active region is in the follower after at most one interval plus a run;
2. policies the follower has: the default version's document;
3. things, a bounded slice per run (complete mode): certificates attached
   and detached, and each certificate's policies. The slice's place in
   ListThings is kept in the applied table, so the whole fleet is covered
   every ceil(things / things_per_run) runs.

It builds on the sync's building blocks (`thing_names`, `RegistryApplier`),
reads before it writes, and so writes nothing when the regions agree.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.errors import CloudError
from iotdr.cloud.propagation import Patience
from iotdr.cloud.registry_apply import CertificateMode, RegistryApplier

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_iot.client import IoTClient

log = logging.getLogger(__name__)

CURSOR_KEY = "control#reconcile-cursor"


@dataclass
class ReconcileReport:
    certificates_checked: int = 0
    policies_checked: int = 0
    things_checked: int = 0
    fleet_pass_complete: bool = False
    errors: dict[str, str] = field(default_factory=dict)


def certificate_statuses(iot: IoTClient) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for page in iot.get_paginator("list_certificates").paginate():
        for certificate in page.get("certificates", []):
            statuses[certificate["certificateId"]] = certificate["status"]
    return statuses


def policy_names(iot: IoTClient) -> Iterator[str]:
    for page in iot.get_paginator("list_policies").paginate():
        for policy in page.get("policies", []):
            yield policy["policyName"]


def reconcile(
    source: RegionClients,
    target: RegionClients,
    *,
    mode: CertificateMode,
    applied_table: str,
    things_per_run: int = 2000,
    patience: Patience | None = None,
) -> ReconcileReport:
    report = ReconcileReport()
    applier = RegistryApplier(
        source=source.iot,
        target=target.iot,
        source_region=source.region,
        target_region=target.region,
        mode=mode,
        patience=patience,
    )

    def attempt(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except (CloudError, ClientError, BotoCoreError) as exc:
            log.warning("reconciling %s failed: %s", what, exc)
            report.errors[what] = str(exc)[:500]

    # Only what both regions hold: a certificate or policy made in the
    # follower itself (its health checker's, a JITR one) is not the source's.
    source_status = certificate_statuses(source.iot)
    for certificate_id, status in certificate_statuses(target.iot).items():
        if certificate_id not in source_status:
            continue
        report.certificates_checked += 1
        if source_status[certificate_id] != status:
            attempt(
                f"certificate {certificate_id}",
                functools.partial(applier.sync_certificate_status, certificate_id),
            )
    source_policies = set(policy_names(source.iot))
    for name in [n for n in policy_names(target.iot) if n in source_policies]:
        report.policies_checked += 1
        attempt(f"policy {name}", functools.partial(applier.sync_policy, name))
    if mode is CertificateMode.COMPLETE:
        things, report.fleet_pass_complete = _thing_slice(
            source.iot, target.dynamodb, applied_table, things_per_run
        )
        for thing in things:
            report.things_checked += 1
            attempt(f"thing {thing}", functools.partial(applier.sync_thing_principals, thing))
    return report


def _thing_slice(
    source: IoTClient, dynamodb: DynamoDBClient, applied_table: str, limit: int
) -> tuple[list[str], bool]:
    """Up to `limit` thing names from where the last run stopped; True when
    this slice reaches the end of the fleet (the next run starts over)."""
    cursor = dynamodb.get_item(
        TableName=applied_table, Key={"pk": {"S": CURSOR_KEY}}, ConsistentRead=True
    ).get("Item")
    token = cursor["token"]["S"] if cursor else ""
    names: list[str] = []
    while len(names) < limit:
        try:
            page = (
                source.list_things(maxResults=min(250, limit - len(names)), nextToken=token)
                if token
                else source.list_things(maxResults=min(250, limit - len(names)))
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "InvalidRequestException" or not token:
                raise
            token = ""  # an expired token: start over
            continue
        names += [thing["thingName"] for thing in page.get("things", [])]
        token = page.get("nextToken", "")
        if not token:
            break
    if token:
        dynamodb.put_item(
            TableName=applied_table, Item={"pk": {"S": CURSOR_KEY}, "token": {"S": token}}
        )
    else:
        dynamodb.delete_item(TableName=applied_table, Key={"pk": {"S": CURSOR_KEY}})
    return names, not token
