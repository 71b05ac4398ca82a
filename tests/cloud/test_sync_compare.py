"""Sync 1,000 things between two moto regions; compare finds planted differences."""

from __future__ import annotations

import argparse
import json

import pytest

from iotdr.cloud import commands
from iotdr.cloud.compare import Difference, compare_devices, compare_shadows
from iotdr.cloud.sync import region_to_region, region_to_table
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions

THINGS = 1000


def _fleet(regions: MotoRegions, count: int) -> None:
    iot, data = regions.clients[PRIMARY].iot, regions.clients[PRIMARY].iot_data
    iot.create_thing_type(thingTypeName="sensor")
    iot.create_thing_group(thingGroupName="site")
    cert = iot.create_keys_and_certificate(setAsActive=True)
    for index in range(count):
        name = f"dev-{index:04d}"
        iot.create_thing(
            thingName=name,
            thingTypeName="sensor",
            attributePayload={"attributes": {"serial": str(index)}},
        )
        if index % 100 == 0:  # a sample with certificates, groups and shadows
            iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
            iot.add_thing_to_thing_group(thingGroupName="site", thingName=name)
            data.update_thing_shadow(
                thingName=name, payload=json.dumps({"state": {"reported": {"i": index}}}).encode()
            )


def test_region_to_region_syncs_a_thousand_things_and_compare_agrees(
    regions: MotoRegions,
) -> None:
    _fleet(regions, THINGS)
    primary, secondary = regions.clients[PRIMARY], regions.clients[SECONDARY]
    # One worker: moto's in-process IoT backend is not thread-safe (its
    # dicts change size under concurrent creates); AWS itself is.
    report = region_to_region(primary, secondary, workers=1)
    assert (report.synced, report.errors) == (THINGS, {})
    assert compare_shadows(primary, secondary, prefix="dev-00") == []
    # A second run over a sample changes nothing and fails nothing.
    again = region_to_region(primary, secondary, workers=1, prefix="dev-000")
    assert (again.synced, again.errors) == (10, {})

    # Plant differences: compare finds exactly them, so all else is equal.
    secondary.iot.update_thing(
        thingName="dev-0005", attributePayload={"attributes": {"serial": "x"}, "merge": True}
    )
    secondary.iot.delete_thing(thingName="dev-0007")
    secondary.iot.create_thing(thingName="dev-extra")
    secondary.iot_data.update_thing_shadow(
        thingName="dev-0000", payload=json.dumps({"state": {"reported": {"i": -1}}}).encode()
    )
    assert compare_devices(primary, secondary) == [
        Difference("dev-0005", "attributes"),
        Difference("dev-0007", f"missing in {SECONDARY}"),
        Difference("dev-extra", f"missing in {PRIMARY}"),
    ]
    assert compare_shadows(primary, secondary, prefix="dev-00") == [
        Difference("dev-0000", "shadow (classic)")
    ]


def test_region_to_table_feeds_the_worker(regions: MotoRegions) -> None:
    _fleet(regions, 50)
    report = region_to_table(regions.clients[PRIMARY], table=TABLES.replication)
    assert report.synced == 50
    # The global table replicates; moto does not, so copy as regions.publish does.
    items = regions.clients[PRIMARY].dynamodb.scan(TableName=TABLES.replication)["Items"]
    for item in items:
        regions.clients[SECONDARY].dynamodb.put_item(TableName=TABLES.replication, Item=item)
    assert regions.replicate(SECONDARY).applied == 50
    assert compare_devices(regions.clients[PRIMARY], regions.clients[SECONDARY]) == []


def test_the_cli_runs_sync_and_compare(
    regions: MotoRegions, capsys: pytest.CaptureFixture[str]
) -> None:
    _fleet(regions, 20)
    parser = argparse.ArgumentParser(prog="iotdr")
    commands.register(parser.add_subparsers(dest="command", required=True))
    common = ["--primary-region", PRIMARY, "--secondary-region", SECONDARY]
    args = parser.parse_args(["cloud", "compare", "devices", *common])
    assert args.func(args) == 1
    args = parser.parse_args(["cloud", "sync", "region-to-region", *common, "--workers", "1"])
    assert args.func(args) == 0
    assert "synced 20, errors 0" in capsys.readouterr().out
    args = parser.parse_args(["cloud", "compare", "devices", *common])
    assert args.func(args) == 0
