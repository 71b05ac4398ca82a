"""Just-in-time registration in a region (jitr mode): the device's certificate
onto the device's own thing.

AWS IoT publishes `$aws/events/certificates/registered/{caCertificateId}`
when a device first connects with a certificate from a CA registered in the
region with auto-registration on; the certificate is then
PENDING_ACTIVATION and the connection is closed
(https://docs.aws.amazon.com/iot/latest/developerguide/auto-register-device-cert.html).
This handler makes it usable for the device's next attempt:

- only for the expected CA (the rule listens to that CA's topic only; the
  handler checks again), and only a certificate that is PENDING_ACTIVATION
  (or ACTIVE, a repeated delivery): never one deactivated or revoked;
- the thing is the one the registry replication brought to this region,
  named by the certificate's subject common name, so policies using
  `${iot:Connection.Thing.ThingName}` hold and no junk thing replicates
  back after a failover. If that thing is not here (yet), nothing is
  activated and `JitrError` is raised: Lambda retries the asynchronous
  invocation, and the thing usually arrives in the meantime; if not,
  `iotdr cloud jitr-pending` (jitr_pending.py) finishes the job later;
- the policy and the thing are attached before the activation, so the
  device's next connection finds everything in place.

Every step tolerates having been done before: the rule may deliver twice.
Certificates AWS IoT issued (CreateKeysAndCertificate) never come through
here: they have no CA registered by you, and need `complete` mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from iotdr.cloud.certificate_subject import subject_common_name
from iotdr.cloud.errors import CloudError

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient


class JitrError(CloudError):
    """A registration event JITR must not act on (wrong CA, unusable
    certificate, no thing for it); the certificate is left as it was."""


def register_just_in_time(
    iot: IoTClient, event: dict[str, Any], *, policy_name: str, expected_ca_id: str
) -> str:
    """Attaches `policy_name` and the device's thing, then activates; returns the thing name."""
    certificate_id = str(event["certificateId"])
    if event.get("caCertificateId") != expected_ca_id:
        raise JitrError(
            f"certificate {certificate_id} comes from CA {event.get('caCertificateId')},"
            f" not the expected {expected_ca_id}: left alone"
        )
    description = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    status, arn = description["status"], description["certificateArn"]
    if status not in ("PENDING_ACTIVATION", "ACTIVE"):
        raise JitrError(f"certificate {certificate_id} is {status}: not activated")
    thing_name = subject_common_name(description["certificatePem"])
    try:
        iot.describe_thing(thingName=thing_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        raise JitrError(
            f"no thing {thing_name} (the subject CN of certificate {certificate_id}) in this"
            " region yet: the certificate stays PENDING_ACTIVATION"
        ) from exc
    if policy_name:
        iot.attach_policy(policyName=policy_name, target=arn)  # idempotent in AWS
    iot.attach_thing_principal(thingName=thing_name, principal=arn)  # idempotent in AWS
    if status != "ACTIVE":
        iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")
    return thing_name
