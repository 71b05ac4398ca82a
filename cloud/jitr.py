"""Just-in-time registration in a region (jitr mode): activate, attach policy, create thing.

AWS IoT publishes `$aws/events/certificates/registered/{caCertificateId}`
when a device first connects with a certificate from a registered CA that
has auto-registration on; the certificate is then PENDING_ACTIVATION and
the connection is closed. This handler makes it usable for the device's
next attempt (https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html).
Every step tolerates having been done before: the rule may deliver twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient


def register_just_in_time(
    iot: IoTClient, event: dict[str, Any], *, policy_name: str, thing_name: str | None = None
) -> str:
    """Activates the certificate, attaches `policy_name` and a thing; returns the thing name."""
    certificate_id = str(event["certificateId"])
    arn = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"][
        "certificateArn"
    ]
    iot.update_certificate(certificateId=certificate_id, newStatus="ACTIVE")
    if policy_name:
        iot.attach_policy(policyName=policy_name, target=arn)
    name = thing_name or certificate_id
    try:
        iot.create_thing(thingName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise
    iot.attach_thing_principal(thingName=name, principal=arn)
    return name
