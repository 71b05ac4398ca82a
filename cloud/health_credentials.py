"""The health checker's own device identity in one region, kept in Secrets Manager.

The health Lambda connects to its region's broker like a device, so it
needs a certificate and a policy that lets it use `iotdr/health/*` only.
CloudFormation cannot create a certificate *with* its private key, so
deploy does it here, once per region (an existing secret is kept), and
destroy removes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from iotdr.cloud.propagation import Patience, until_detached

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient
    from types_boto3_secretsmanager.client import SecretsManagerClient

SECRET_NAME = "iotdr/health-credentials"
POLICY_NAME = "iotdr-health-check"


def health_policy(region: str, account: str) -> str:
    """Only what health.check_broker does: its client ids and its topics."""
    arn = f"arn:aws:iot:{region}:{account}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": f"{arn}:client/iotdr-health-*",
                },
                {
                    "Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Receive"],
                    "Resource": f"{arn}:topic/iotdr/health/*",
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": f"{arn}:topicfilter/iotdr/health/*",
                },
            ],
        }
    )


def ensure_health_credentials(
    iot: IoTClient, secretsmanager: SecretsManagerClient, *, region: str, account: str
) -> str:
    """The secret's ARN; creates certificate, policy and secret on first deploy."""
    try:
        return secretsmanager.describe_secret(SecretId=SECRET_NAME)["ARN"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        iot.create_policy(policyName=POLICY_NAME, policyDocument=health_policy(region, account))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_policy(policyName=POLICY_NAME, target=certificate["certificateArn"])
    secret = {
        "certificateArn": certificate["certificateArn"],
        "certificatePem": certificate["certificatePem"],
        "privateKey": certificate["keyPair"]["PrivateKey"],
    }
    return secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret))["ARN"]


def delete_health_credentials(iot: IoTClient, secretsmanager: SecretsManagerClient) -> bool:
    """Removes certificate, policy and secret; False when there was nothing to remove."""
    try:
        secret = json.loads(secretsmanager.get_secret_value(SecretId=SECRET_NAME)["SecretString"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return False
    arn = secret["certificateArn"]
    iot.detach_policy(policyName=POLICY_NAME, target=arn)
    # A certificate must be inactive before it can be deleted (DeleteCertificate docs).
    iot.update_certificate(certificateId=arn.rsplit("/", 1)[1], newStatus="INACTIVE")
    certificate_id = arn.rsplit("/", 1)[1]
    until_detached(lambda: iot.delete_certificate(certificateId=certificate_id), Patience())
    iot.delete_policy(policyName=POLICY_NAME)
    secretsmanager.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
    return True
