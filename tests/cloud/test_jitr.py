"""The JITR handler against moto: a certificate from the expected CA shows up
PENDING_ACTIVATION; the handler attaches the policy and the device's own
replicated thing (named by the certificate's subject CN), then activates;
running it again (the rule may deliver twice) changes nothing. Other CAs,
revoked certificates and devices without a thing are left alone."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from types_boto3_iot.client import IoTClient

from iotdr.cloud import commands
from iotdr.cloud.certificate_subject import CertificateFormatError, subject_common_name
from iotdr.cloud.deploy import DeploymentPlan, check_jitr_prerequisites
from iotdr.cloud.errors import DeploymentError
from iotdr.cloud.jitr import JitrError, register_just_in_time
from iotdr.cloud.registry_apply import CertificateMode
from tests.cloud.aws_behaviour import CaAutoRegistration
from tests.cloud.template_reader import resources_of

REGION = "us-west-2"


def _cert(
    subject: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> str:
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fleet Inc"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class Fleet:
    iot: IoTClient
    ca_pem: str
    ca_id: str
    ca_key: ec.EllipticCurvePrivateKey

    def device(self, common_name: str) -> dict[str, str]:
        """A device certificate as AWS IoT auto-registers it: PENDING_ACTIVATION."""
        pem = _cert(
            _name(common_name),
            self.ca_key,
            "fleet-ca",
            ec.generate_private_key(ec.SECP256R1()),
            ca=False,
        )
        cert = self.iot.register_certificate(
            certificatePem=pem, caCertificatePem=self.ca_pem, status="PENDING_ACTIVATION"
        )
        return {"certificateId": cert["certificateId"], "certificateArn": cert["certificateArn"]}

    def event(self, certificate_id: str, ca_id: str | None = None) -> dict[str, object]:
        # The payload AWS IoT publishes on $aws/events/certificates/registered/<ca>.
        return {
            "certificateId": certificate_id,
            "caCertificateId": ca_id or self.ca_id,
            "timestamp": 1,
            "certificateStatus": "PENDING_ACTIVATION",
            "awsAccountId": "123456789012",
            "certificateRegistrationTimestamp": 1,
        }

    def status(self, certificate_id: str) -> str:
        described = self.iot.describe_certificate(certificateId=certificate_id)
        return described["certificateDescription"]["status"]


@pytest.fixture
def fleet(aws_credentials: None) -> Iterator[Fleet]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        CaAutoRegistration().install(iot)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_pem = _cert(_name("fleet-ca"), ca_key, "fleet-ca", ca_key, ca=True)
        ca_id = iot.register_ca_certificate(
            caCertificate=ca_pem, setAsActive=True, allowAutoRegistration=True
        )["certificateId"]
        iot.create_policy(
            policyName="device",
            policyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "iot:Connect",
                            "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
                        }
                    ],
                }
            ),
        )
        yield Fleet(iot, ca_pem, ca_id, ca_key)


def test_jitr_attaches_the_devices_replicated_thing_and_is_idempotent(fleet: Fleet) -> None:
    fleet.iot.create_thing(thingName="sensor-7")  # replicated from the primary
    cert = fleet.device("sensor-7")

    for _ in range(2):  # delivered twice: same outcome
        name = register_just_in_time(
            fleet.iot,
            fleet.event(cert["certificateId"]),
            policy_name="device",
            expected_ca_id=fleet.ca_id,
        )

    assert name == "sensor-7"
    assert fleet.status(cert["certificateId"]) == "ACTIVE"
    policies = fleet.iot.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert [p["policyName"] for p in policies] == ["device"]
    principals = fleet.iot.list_thing_principals(thingName="sensor-7")["principals"]
    assert principals == [cert["certificateArn"]]
    assert [t["thingName"] for t in fleet.iot.list_things()["things"]] == ["sensor-7"]


def test_jitr_leaves_alone_other_cas_unusable_certificates_and_missing_things(
    fleet: Fleet,
) -> None:
    fleet.iot.create_thing(thingName="sensor-8")
    other_ca = fleet.device("sensor-8")
    with pytest.raises(JitrError, match="not the expected"):
        register_just_in_time(
            fleet.iot,
            fleet.event(other_ca["certificateId"], ca_id="f" * 64),
            policy_name="device",
            expected_ca_id=fleet.ca_id,
        )
    assert fleet.status(other_ca["certificateId"]) == "PENDING_ACTIVATION"

    revoked = fleet.device("sensor-8")
    fleet.iot.update_certificate(certificateId=revoked["certificateId"], newStatus="REVOKED")
    with pytest.raises(JitrError, match="REVOKED"):
        register_just_in_time(
            fleet.iot,
            fleet.event(revoked["certificateId"]),
            policy_name="device",
            expected_ca_id=fleet.ca_id,
        )
    assert fleet.status(revoked["certificateId"]) == "REVOKED"

    orphan = fleet.device("sensor-not-replicated")
    with pytest.raises(JitrError, match="no thing sensor-not-replicated"):
        register_just_in_time(
            fleet.iot,
            fleet.event(orphan["certificateId"]),
            policy_name="device",
            expected_ca_id=fleet.ca_id,
        )
    assert fleet.status(orphan["certificateId"]) == "PENDING_ACTIVATION"
    assert "sensor-not-replicated" not in {
        t["thingName"] for t in fleet.iot.list_things()["things"]
    }


def test_deploy_checks_the_jitr_prerequisites(fleet: Fleet) -> None:
    plan = DeploymentPlan(
        primary_region="us-east-1",
        secondary_region=REGION,
        certificate_mode=CertificateMode.JITR,
        jitr_ca_certificate_id=fleet.ca_id,
        jitr_policy_name="device",
    )
    check_jitr_prerequisites(plan, fleet.iot, REGION)  # all there

    fleet.iot.update_ca_certificate(certificateId=fleet.ca_id, newAutoRegistrationStatus="DISABLE")
    with pytest.raises(DeploymentError, match="auto-registration off"):
        check_jitr_prerequisites(plan, fleet.iot, REGION)
    missing = DeploymentPlan(
        primary_region="us-east-1",
        secondary_region=REGION,
        certificate_mode=CertificateMode.JITR,
        jitr_ca_certificate_id="0" * 64,
    )
    with pytest.raises(DeploymentError, match="not registered here"):
        check_jitr_prerequisites(missing, fleet.iot, REGION)
    with pytest.raises(DeploymentError, match="--jitr-ca-certificate-id"):
        DeploymentPlan(
            primary_region="us-east-1",
            secondary_region=REGION,
            certificate_mode=CertificateMode.JITR,
        )


def test_the_jitr_rule_listens_to_the_expected_ca_only() -> None:
    rule = resources_of("region.yaml", "AWS::IoT::TopicRule")["JitrRule"]
    sql = rule["Properties"]["TopicRulePayload"]["Sql"]["Sub"]
    assert sql.endswith("registered/${JitrCaCertificateId}'") and "#" not in sql


def test_the_subject_common_name_is_read_from_the_der() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = _cert(_name("gateway-ünï-42"), key, "ca", key, ca=False)
    assert subject_common_name(pem) == "gateway-ünï-42"
    no_cn = _cert(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]), key, "ca", key, ca=False
    )
    with pytest.raises(CertificateFormatError, match="no common name"):
        subject_common_name(no_cn)
    with pytest.raises(CertificateFormatError):
        subject_common_name("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")


def test_jitr_pending_finishes_what_a_missing_thing_held_up(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    early = fleet.device("sensor-9")  # its event came before its thing
    with pytest.raises(JitrError):
        register_just_in_time(
            fleet.iot,
            fleet.event(early["certificateId"]),
            policy_name="device",
            expected_ca_id=fleet.ca_id,
        )
    still = fleet.device("sensor-never")
    fleet.iot.create_thing(thingName="sensor-9")  # the replication catches up

    parser = argparse.ArgumentParser(prog="iotdr")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "cloud",
            "jitr-pending",
            "--region",
            REGION,
            "--jitr-ca-certificate-id",
            fleet.ca_id,
            "--jitr-policy-name",
            "device",
        ]
    )
    assert args.func(args) == 1  # one is still waiting for its thing
    out, err = capsys.readouterr()
    assert "registered 1, left 1" in out and still["certificateId"] in err
    assert fleet.status(early["certificateId"]) == "ACTIVE"
    assert fleet.status(still["certificateId"]) == "PENDING_ACTIVATION"
    principals = fleet.iot.list_thing_principals(thingName="sensor-9")["principals"]
    assert principals == [early["certificateArn"]]
