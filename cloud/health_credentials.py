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

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.propagation import Patience, until_detached

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient
    from types_boto3_secretsmanager.client import SecretsManagerClient

SECRET_NAME = "iotdr/health-credentials"
POLICY_NAME = "iotdr-health-check"


def partition_of(arn: str) -> str:
    """`aws`, `aws-cn`, `aws-us-gov`: the second field of any ARN."""
    return arn.split(":")[1]


def health_policy(region: str, account: str, partition: str = "aws") -> str:
    """Only what health.check_broker does: its client ids and its topics."""
    arn = f"arn:{partition}:iot:{region}:{account}"
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
    iot: IoTClient,
    secretsmanager: SecretsManagerClient,
    *,
    region: str,
    account: str,
    partition: str = "aws",
) -> str:
    """The secret's ARN; creates certificate, policy and secret on first deploy.

    A failure after the certificate exists (attaching the policy, storing
    the secret) removes the certificate again before raising: its private
    key would be lost with it, so nothing could ever use or find it, and
    the next deploy makes a new one anyway."""
    try:
        return secretsmanager.describe_secret(SecretId=SECRET_NAME)["ARN"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    try:
        iot.create_policy(
            policyName=POLICY_NAME, policyDocument=health_policy(region, account, partition)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    certificate = iot.create_keys_and_certificate(setAsActive=True)
    try:
        iot.attach_policy(policyName=POLICY_NAME, target=certificate["certificateArn"])
        secret = {
            "certificateArn": certificate["certificateArn"],
            "certificatePem": certificate["certificatePem"],
            "privateKey": certificate["keyPair"]["PrivateKey"],
        }
        return secretsmanager.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret))[
            "ARN"
        ]
    except (ClientError, BotoCoreError):
        _remove_certificate(iot, certificate["certificateArn"])
        raise


def _remove_certificate(iot: IoTClient, arn: str) -> None:
    certificate_id = arn.rsplit("/", 1)[1]
    try:
        iot.detach_policy(policyName=POLICY_NAME, target=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    # A certificate must be inactive before it can be deleted (DeleteCertificate docs).
    iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
    until_detached(lambda: iot.delete_certificate(certificateId=certificate_id), Patience())


def delete_health_credentials(iot: IoTClient, secretsmanager: SecretsManagerClient) -> bool:
    """Removes certificate, policy and secret; False when there was nothing to remove."""
    try:
        secret = json.loads(secretsmanager.get_secret_value(SecretId=SECRET_NAME)["SecretString"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return False
    _remove_certificate(iot, secret["certificateArn"])
    iot.delete_policy(policyName=POLICY_NAME)
    secretsmanager.delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
    return True
