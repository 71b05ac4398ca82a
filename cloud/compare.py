"""Compares two regions: which devices or shadows differ, and how."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import ClientError

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.progress import Progress
from iotdr.cloud.shadow_apply import read_shadow_state
from iotdr.cloud.sync import shadow_names, thing_names


@dataclass(frozen=True, order=True)
class Difference:
    name: str
    what: str  # "missing in <region>", "attributes", "thing type", "certificates", "shadow ..."


def _describe(clients: RegionClients, name: str) -> tuple[str | None, dict[str, str], set[str]]:
    thing = clients.iot.describe_thing(thingName=name)
    principals: set[str] = set()
    paginator = clients.iot.get_paginator("list_thing_principals")
    for page in paginator.paginate(thingName=name):
        principals.update(p.rsplit("/", 1)[-1] for p in page.get("principals", []))
    return thing.get("thingTypeName"), dict(thing.get("attributes", {})), principals


def compare_devices(
    primary: RegionClients, secondary: RegionClients, *, prefix: str = "", workers: int = 10
) -> list[Difference]:
    left = set(thing_names(primary.iot, prefix=prefix))
    right = set(thing_names(secondary.iot, prefix=prefix))
    differences = [Difference(n, f"missing in {secondary.region}") for n in left - right]
    differences += [Difference(n, f"missing in {primary.region}") for n in right - left]
    both = sorted(left & right)
    progress = Progress("compare devices", len(both))

    def one(name: str) -> list[Difference]:
        (type_a, attrs_a, certs_a), (type_b, attrs_b, certs_b) = (
            _describe(primary, name),
            _describe(secondary, name),
        )
        found = []
        if type_a != type_b:
            found.append(Difference(name, "thing type"))
        if attrs_a != attrs_b:
            found.append(Difference(name, "attributes"))
        if certs_a != certs_b:  # certificate ids are the same in every region
            found.append(Difference(name, "certificates"))
        progress.advance()
        return found

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found in pool.map(one, both):
            differences += found
    progress.close()
    return sorted(differences)


def compare_shadows(
    primary: RegionClients, secondary: RegionClients, *, prefix: str = "", workers: int = 10
) -> list[Difference]:
    names = sorted(thing_names(primary.iot, prefix=prefix))
    progress = Progress("compare shadows", len(names))

    def one(name: str) -> list[Difference]:
        found = []
        try:
            for shadow in shadow_names(primary.iot_data, name):
                label = f"shadow {shadow or '(classic)'}"
                if read_shadow_state(primary.iot_data, name, shadow) != read_shadow_state(
                    secondary.iot_data, name, shadow
                ):
                    found.append(Difference(name, label))
        except ClientError as exc:
            found.append(Difference(name, f"error: {exc}"))
        progress.advance()
        return found

    differences: list[Difference] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found in pool.map(one, names):
            differences += found
    progress.close()
    return sorted(differences)
