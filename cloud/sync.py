"""Region syncs for devices that existed before the deployment.

- `region_to_region`: copies each thing (type, attributes, certificates,
  policies, group memberships, classic and named shadows) straight into the
  target region, with N worker threads;
- `region_to_table`: writes one THING_EVENT per thing into the replication
  table, exactly as the registry rule would, and lets the target's worker
  do the rest (with its retries and error table).

Both page through ListThings; the boto3 clients throttle themselves
(adaptive retries), so more workers never means errors, only waiting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.errors import CloudError
from iotdr.cloud.progress import Progress
from iotdr.cloud.records import rule_item
from iotdr.cloud.registry_apply import CertificateMode, RegistryApplier
from iotdr.cloud.shadow_apply import ShadowApplier, read_shadow_state

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient
    from types_boto3_iot_data.client import IoTDataPlaneClient


@dataclass
class SyncReport:
    synced: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0


def thing_names(iot: IoTClient, *, prefix: str = "") -> Iterator[str]:
    for page in iot.get_paginator("list_things").paginate():
        for thing in page.get("things", []):
            if thing["thingName"].startswith(prefix):
                yield thing["thingName"]


def shadow_names(iot_data: IoTDataPlaneClient, thing_name: str) -> Iterator[str | None]:
    """The classic shadow (None) and every named one. ListNamedShadowsForThing
    has no boto3 paginator, so this follows nextToken itself."""
    yield None
    token = ""
    while True:
        page = (
            iot_data.list_named_shadows_for_thing(thingName=thing_name, nextToken=token)
            if token
            else iot_data.list_named_shadows_for_thing(thingName=thing_name)
        )
        yield from page.get("results", [])
        token = page.get("nextToken", "")
        if not token:
            return


def sync_one_thing(
    source: RegionClients, target: RegionClients, name: str, mode: CertificateMode
) -> None:
    applier = RegistryApplier(
        source=source.iot,
        target=target.iot,
        source_region=source.region,
        target_region=target.region,
        mode=mode,
    )
    thing = source.iot.describe_thing(thingName=name)
    thing_type = thing.get("thingTypeName")
    if thing_type:
        applier.ensure_thing_type(thing_type)
    applier.upsert_thing(name, thing_type, dict(thing.get("attributes", {})))
    if mode is CertificateMode.COMPLETE:
        applier.copy_principals(name)
    for page in source.iot.get_paginator("list_thing_groups_for_thing").paginate(thingName=name):
        for group in page.get("thingGroups", []):
            applier.ensure_group(group["groupName"])
            target.iot.add_thing_to_thing_group(thingGroupName=group["groupName"], thingName=name)
    shadows = ShadowApplier(target=target.iot_data, origin=source.region)
    for shadow in shadow_names(source.iot_data, name):
        state = read_shadow_state(source.iot_data, name, shadow)
        if state is not None:
            shadows.put_state(name, shadow, state)


def region_to_region(
    source: RegionClients,
    target: RegionClients,
    *,
    workers: int = 10,
    prefix: str = "",
    mode: CertificateMode = CertificateMode.COMPLETE,
) -> SyncReport:
    started = time.monotonic()
    names = list(thing_names(source.iot, prefix=prefix))
    report = SyncReport()
    progress = Progress("region-to-region", len(names))

    def one(name: str) -> str | None:
        try:
            sync_one_thing(source, target, name, mode)
            return None
        except (CloudError, ClientError, BotoCoreError) as exc:
            return str(exc)
        finally:
            progress.advance()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, error in zip(names, pool.map(one, names), strict=True):
            if error is None:
                report.synced += 1
            else:
                report.errors[name] = error
    progress.close()
    report.elapsed_s = time.monotonic() - started
    return report


def region_to_table(source: RegionClients, *, table: str, prefix: str = "") -> SyncReport:
    """Feeds the replication table in the source region as its registry rule would."""
    started = time.monotonic()
    report = SyncReport()
    names = list(thing_names(source.iot, prefix=prefix))
    progress = Progress("region-to-table", len(names))
    serializer = TypeSerializer()
    for name in names:
        thing = source.iot.describe_thing(thingName=name)
        payload = {
            "eventType": "THING_EVENT",
            "eventId": f"iotdr-sync-{name}",
            "timestamp": int(time.time() * 1000),
            "operation": "UPDATED",
            "thingName": name,
            "thingTypeName": thing.get("thingTypeName"),
            "attributes": dict(thing.get("attributes", {})),
        }
        item = rule_item(
            f"$aws/events/thing/{name}/updated",
            payload,
            origin=source.region,
            now_s=int(time.time()),
        )
        source.dynamodb.put_item(
            TableName=table, Item={k: serializer.serialize(v) for k, v in item.items()}
        )
        report.synced += 1
        progress.advance()
    progress.close()
    report.elapsed_s = time.monotonic() - started
    return report
