"""The health checker's credentials: partition-aware policy, no orphaned
certificate when set-up fails half-way, and a clean removal."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from iotdr.cloud.health_credentials import (
    delete_health_credentials,
    ensure_health_credentials,
    health_policy,
    partition_of,
)
from tests.cloud.aws_behaviour import aws_error

REGION = "cn-north-1"


def test_the_policy_names_the_accounts_partition() -> None:
    assert partition_of("arn:aws-cn:iam::123456789012:user/x") == "aws-cn"
    document = json.loads(health_policy(REGION, "123456789012", "aws-cn"))
    resources = [statement["Resource"] for statement in document["Statement"]]
    assert all(r.startswith(f"arn:aws-cn:iot:{REGION}:123456789012:") for r in resources)


def test_a_failed_secret_leaves_no_certificate_behind(aws_credentials: None) -> None:
    with mock_aws():
        iot = boto3.client("iot", region_name="us-east-1")
        secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")

        def refuse(**_: Any) -> Any:  # CreateSecret's documented quota error
            return aws_error("LimitExceededException", "You have exceeded the quota", 400)

        secretsmanager.meta.events.register("before-call.secrets-manager.CreateSecret", refuse)
        with pytest.raises(ClientError, match="LimitExceededException"):
            ensure_health_credentials(iot, secretsmanager, region="us-east-1", account="1")
        assert iot.list_certificates()["certificates"] == []

        secretsmanager.meta.events.unregister("before-call.secrets-manager.CreateSecret", refuse)
        arn = ensure_health_credentials(iot, secretsmanager, region="us-east-1", account="1")
        assert (
            ensure_health_credentials(iot, secretsmanager, region="us-east-1", account="1") == arn
        )
        assert len(iot.list_certificates()["certificates"]) == 1
        assert delete_health_credentials(iot, secretsmanager)
        assert iot.list_certificates()["certificates"] == []
        assert not delete_health_credentials(iot, secretsmanager)
