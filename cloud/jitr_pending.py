"""`iotdr cloud jitr-pending`: JITR again for certificates left PENDING_ACTIVATION.

A certificate's registration event comes once, when AWS first registers it;
if the device's thing had not been replicated yet and Lambda's retries ran
out, the certificate stays pending. This runs the same registration
(jitr.py) from the operator's machine, for every certificate of the CA
still pending. It is kept apart from jitr.py so the JITR function's role
need not list the CA's certificates (tests/cloud/test_iam.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotdr.cloud.errors import CloudError
from iotdr.cloud.jitr import register_just_in_time

if TYPE_CHECKING:
    from types_boto3_iot.client import IoTClient


def register_pending(
    iot: IoTClient, *, policy_name: str, ca_certificate_id: str
) -> tuple[list[str], dict[str, str]]:
    """Runs the registration again for every certificate of the CA still
    PENDING_ACTIVATION (its event came and went while its thing was
    missing); returns (things registered, certificate id -> why not)."""
    done: list[str] = []
    left: dict[str, str] = {}
    pages = iot.get_paginator("list_certificates_by_ca").paginate(caCertificateId=ca_certificate_id)
    for page in pages:
        for certificate in page.get("certificates", []):
            if certificate.get("status") != "PENDING_ACTIVATION":
                continue
            certificate_id = certificate["certificateId"]
            event = {"certificateId": certificate_id, "caCertificateId": ca_certificate_id}
            try:
                done.append(
                    register_just_in_time(
                        iot, event, policy_name=policy_name, expected_ca_id=ca_certificate_id
                    )
                )
            except CloudError as exc:
                left[certificate_id] = str(exc)
    return done, left
