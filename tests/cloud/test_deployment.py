"""deploy, check-deployment and destroy through the CLI against moto's server.

The server runs in its own process on a free port; every client reaches
it through `--endpoint-url`, so deploy's CloudFormation,
S3, Secrets Manager and IoT calls are the real boto3 ones. moto's
CloudFormation has no AWS::DynamoDB::GlobalTable, AWS::IoT::TopicRule or
AWS::CloudWatch::Alarm: it skips them with a warning, so
the test creates the global table's two replicas itself, as AWS would.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Iterator

import boto3
import pytest

from iotdr.cloud import commands, emulator
from iotdr.cloud.deploy import DeploymentPlan
from iotdr.cloud.deployment_check import DeploymentCheck
from iotdr.cloud.errors import DeploymentError
from iotdr.cloud.lambda_package import build_lambda_package
from iotdr.cloud.propagation import Patience
from iotdr.cloud.tables import create_replication_table
from tests.cloud.aws_behaviour import DetachPropagation
from tests.cloud.regions import PRIMARY, SECONDARY


@pytest.fixture
def moto_server(aws_credentials: None) -> Iterator[str]:
    with emulator.moto_server() as server:
        yield server.url


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="iotdr")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cloud", *argv])
    code: int = args.func(args)
    return code


def test_deploy_check_and_destroy_against_moto_server(
    moto_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--primary-region", PRIMARY, "--secondary-region", SECONDARY]
    common += ["--endpoint-url", moto_server]
    for region in (PRIMARY, SECONDARY):  # stands in for AWS::DynamoDB::GlobalTable's replicas
        dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=moto_server)
        create_replication_table(dynamodb, "iotdr-replication")
    route53 = boto3.client("route53", endpoint_url=moto_server)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="iotdr-test")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[1]

    deploy = ["deploy", *common, "--hosted-zone-id", zone_id, "--record-name", "iot.example.com"]
    assert _run(*deploy) == 0
    out = capsys.readouterr().out
    for stack in ("iotdr-replication-table", "iotdr-region", "iotdr-dns"):
        assert f"stack {stack} ready" in out
    assert "skipped: us-east-1: enabling registry events" in out
    for region in (PRIMARY, SECONDARY):
        functions = boto3.client("lambda", region_name=region, endpoint_url=moto_server)
        handlers = {f.get("Handler") for f in functions.list_functions()["Functions"]}
        assert "iotdr/cloud/lambda_entry.replication_handler" in handlers
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert {(r["Name"].rstrip("."), r["Type"]) for r in records} >= {
        ("iot.example.com", "CNAME"),
        ("_iot.example.com", "TXT"),
    }

    assert _run(*deploy) == 0  # a second deploy updates in place
    for region in (PRIMARY, SECONDARY):  # iotdr switched registry events on: destroy turns them off
        cloudformation = boto3.client(
            "cloudformation", region_name=region, endpoint_url=moto_server
        )
        outputs = cloudformation.describe_stacks(StackName="iotdr-region")["Stacks"][0]["Outputs"]
        assert {"OutputKey": "RegistryEventsOwned", "OutputValue": "true"} in [
            {"OutputKey": o["OutputKey"], "OutputValue": o["OutputValue"]} for o in outputs
        ]
    capsys.readouterr()

    assert _run("check-deployment", *common) == 0
    out = capsys.readouterr().out
    assert "ok: thing, certificate and policy in the secondary" in out
    assert "ok: shadow synced to the secondary" in out
    assert "ok: certificate deactivation in the secondary" in out
    assert "ok: delete replicated to the secondary" in out
    assert "skipped: us-east-1: MQTT publish/subscribe" in out
    assert "skipped: thing, certificate and policy in the secondary: pipeline" in out
    assert "FAILED" not in out and "deployment check passed" in out
    for region in (PRIMARY, SECONDARY):  # the check leaves nothing behind
        iot = boto3.client("iot", region_name=region, endpoint_url=moto_server)
        assert not [t for t in iot.list_things()["things"] if "iotdr-check" in t["thingName"]]

    # Again with AWS's asynchronous detach (aws_behaviour.py): the delete step
    # and the clean-up wait for it instead of reporting FAILED.
    waits: list[float] = []
    plan = DeploymentPlan(
        primary_region=PRIMARY, secondary_region=SECONDARY, endpoint_url=moto_server
    )
    check = DeploymentCheck(plan, say=lambda _line: None, patience=Patience(sleep=waits.append))
    propagation = [DetachPropagation().install(check.clients(r).iot) for r in plan.regions]
    assert check.run(), [r.line() for r in check.results]
    assert all(p.rejected > 0 for p in propagation) and waits

    assert _run("destroy", *common) == 0
    assert "skipped: us-east-1: disabling registry events" in capsys.readouterr().out
    cloudformation = boto3.client("cloudformation", region_name=PRIMARY, endpoint_url=moto_server)
    live = [
        s["StackName"]
        for s in cloudformation.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert live == []
    s3 = boto3.client("s3", region_name=PRIMARY, endpoint_url=moto_server)
    assert s3.list_buckets()["Buckets"] == []


def test_check_deployment_fails_without_a_deployment(
    moto_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--primary-region", PRIMARY, "--secondary-region", SECONDARY]
    assert _run("check-deployment", *argv, "--endpoint-url", moto_server) == 1
    assert "FAILED: us-east-1: stack iotdr-region" in capsys.readouterr().out


def test_the_lambda_package_is_reproducible_and_holds_the_handlers() -> None:
    first, second = build_lambda_package(), build_lambda_package()
    assert first.key == second.key and first.archive == second.archive
    names = set(zipfile.ZipFile(io.BytesIO(first.archive)).namelist())
    assert {"iotdr/cloud/lambda_entry.py", "paho/mqtt/client.py", "tenacity/__init__.py"} <= names


def test_a_plan_refuses_half_a_dns_setup_and_one_region() -> None:
    with pytest.raises(DeploymentError):
        DeploymentPlan(primary_region=PRIMARY, secondary_region=SECONDARY, hosted_zone_id="Z1")
    with pytest.raises(DeploymentError):
        DeploymentPlan(primary_region=PRIMARY, secondary_region=PRIMARY)
