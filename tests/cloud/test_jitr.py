"""The JITR handler against moto: a certificate from a registered CA shows
up PENDING_ACTIVATION; the handler activates it, attaches the policy and a
thing, and running it again (the rule may deliver twice) changes nothing."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from types_boto3_iot.client import IoTClient

from iotdr.cloud.jitr import register_just_in_time

REGION = "us-west-2"


def _cert(
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> str:
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def client(aws_credentials: None) -> Iterator[IoTClient]:
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


def test_jitr_activates_attaches_and_is_idempotent(client: IoTClient) -> None:
    ca_key, device_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_pem = _cert("fleet-ca", ca_key, "fleet-ca", ca_key, ca=True)
    device_pem = _cert("sensor-7", ca_key, "fleet-ca", device_key, ca=False)
    ca_id = client.register_ca_certificate(
        caCertificate=ca_pem, setAsActive=True, allowAutoRegistration=True
    )["certificateId"]
    cert = client.register_certificate(
        certificatePem=device_pem, caCertificatePem=ca_pem, status="PENDING_ACTIVATION"
    )
    client.create_policy(
        policyName="device",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
            }
        ),
    )
    # The payload AWS IoT publishes on $aws/events/certificates/registered/<ca>.
    event = {
        "certificateId": cert["certificateId"],
        "caCertificateId": ca_id,
        "timestamp": 1,
        "certificateStatus": "PENDING_ACTIVATION",
        "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": 1,
    }

    for _ in range(2):  # delivered twice: same outcome
        name = register_just_in_time(client, event, policy_name="device")

    description = client.describe_certificate(certificateId=cert["certificateId"])
    assert description["certificateDescription"]["status"] == "ACTIVE"
    policies = client.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert [p["policyName"] for p in policies] == ["device"]
    assert client.list_thing_principals(thingName=name)["principals"] == [cert["certificateArn"]]
    assert name == cert["certificateId"]
