"""`iotdr cloud check-deployment`: one device through a deployed pair of regions.

Creates a thing with a certificate and a policy in the primary, expects it
(with both) in the secondary, MQTT pub/sub in both regions with the
device's certificate, its shadow synced, its certificate's deactivation
(a CloudTrail management event) and its deletion replicated; then
removes what it created, in both regions, whatever happened.

Against AWS each replication step waits up to `timeout_s` for the deployed
pipeline and fails if nothing arrives. Behind `--endpoint-url` (moto), the
managed steps the emulator does not run are reported "skipped: <reason>"
and stood in for by `EmulatedReplication` (same rule item, same worker), so
the outcome in the secondary is still checked with real API calls. Nothing
is ever reported as passed that was not observed.
"""

from __future__ import annotations

import datetime
import enum
import json
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.deploy import (
    REGISTRY_EVENTS,
    DeployClients,
    DeploymentPlan,
    data_endpoint,
    one_off_iot,
)
from iotdr.cloud.emulated_replication import EmulatedReplication
from iotdr.cloud.health import HealthCheckConfig, check_broker
from iotdr.cloud.health_credentials import partition_of
from iotdr.cloud.management import management_payload
from iotdr.cloud.propagation import Patience, until_detached
from iotdr.cloud.shadow_apply import read_shadow_state
from iotdr.cloud.stacks import stack_outputs, stack_status
from iotdr.cloud.worker import Tables

Say = Callable[[str], None]
NO_DATA_PLANE = "moto has no MQTT data plane"
RULES_DO_NOT_FIRE = (
    "topic rules do not fire and the global table does not replicate on this endpoint;"
    " stood in for: the rule's item in both replicas, the stream record, the worker run"
)


class Outcome(enum.Enum):
    PASSED = "ok"
    SKIPPED = "skipped"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class StepResult:
    step: str
    outcome: Outcome
    detail: str = ""

    def line(self) -> str:
        if self.outcome is Outcome.SKIPPED:
            return f"skipped: {self.step}: {self.detail}"
        return f"{self.outcome.value}: {self.step}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    private_key: str

    @property
    def policy_name(self) -> str:
        return f"{self.name}-policy"


class DeploymentCheck:
    def __init__(
        self,
        plan: DeploymentPlan,
        *,
        timeout_s: float = 120.0,
        say: Say = print,
        patience: Patience | None = None,
    ):
        self._plan, self._timeout_s, self._say = plan, timeout_s, say
        self._patience = patience or Patience()
        self._regions = {
            r: RegionClients.create(r, endpoint_url=plan.endpoint_url) for r in plan.regions
        }
        self._deploy = {
            r: DeployClients.create(r, endpoint_url=plan.endpoint_url) for r in plan.regions
        }
        self.results: list[StepResult] = []

    def clients(self, region: str) -> RegionClients:
        return self._regions[region]

    @property
    def passed(self) -> bool:
        return all(r.outcome is not Outcome.FAILED for r in self.results)

    def run(self) -> bool:
        if not self._stacks_ready():
            return False
        for region in self._plan.regions:
            self._registry_events(region)
        primary, secondary = self._plan.regions
        device = self._create_device(primary)
        try:
            emulated = self._emulated_replication() if self._plan.emulated else None
            self._replicate(
                emulated,
                _thing_message(device.name, "CREATED", {"iotdr-check": "1"}),
                "thing, certificate and policy in the secondary",
                lambda: self._device_in(secondary, device),
            )
            for region in self._plan.regions:
                self._pub_sub(region, device)
            shadow = self._update_shadow(primary, device.name)
            self._replicate(
                emulated,
                shadow,
                "shadow synced to the secondary",
                lambda: (
                    read_shadow_state(self._regions[secondary].iot_data, device.name, None)
                    == read_shadow_state(self._regions[primary].iot_data, device.name, None)
                ),
            )
            self._deactivate(primary, device)
            self._replicate(
                emulated,
                _management_message("UpdateCertificate", certificateId=device.certificate_id),
                "certificate deactivation in the secondary",
                lambda: self._certificate_status(secondary, device) == "INACTIVE",
            )
            self._delete_thing(primary, device)
            self._replicate(
                emulated,
                _thing_message(device.name, "DELETED", {}),
                "delete replicated to the secondary",
                lambda: not self._thing_exists(secondary, device.name),
            )
        finally:
            self._clean_up(device)
        return self.passed

    # steps ------------------------------------------------------------------

    def _record(self, step: str, outcome: Outcome, detail: str = "") -> None:
        result = StepResult(step, outcome, detail)
        self.results.append(result)
        self._say(result.line())

    def _stacks_ready(self) -> bool:
        names = [(self._plan.primary_region, self._plan.table_stack)]
        names += [(r, self._plan.region_stack) for r in self._plan.regions]
        ready = True
        for region, name in names:
            status = stack_status(self._deploy[region].cloudformation, name)
            ok = status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
            ready &= ok
            self._record(
                f"{region}: stack {name}", Outcome.PASSED if ok else Outcome.FAILED, str(status)
            )
        if ready:
            for region in self._plan.regions:
                self._topic_rules(region)
        return ready

    def _topic_rules(self, region: str) -> None:
        resources = self._deploy[region].cloudformation.get_paginator("list_stack_resources")
        rules = [
            r
            for page in resources.paginate(StackName=self._plan.region_stack)
            for r in page["StackResourceSummaries"]
            if r.get("ResourceType") == "AWS::IoT::TopicRule"
        ]
        if rules:
            self._record(f"{region}: topic rules", Outcome.PASSED, f"{len(rules)} deployed")
        elif self._plan.emulated:
            self._record(
                f"{region}: topic rules",
                Outcome.SKIPPED,
                "the endpoint's CloudFormation created none (moto has no AWS::IoT::TopicRule)",
            )
        else:
            self._record(f"{region}: topic rules", Outcome.FAILED, "none in the region stack")

    def _registry_events(self, region: str) -> None:
        step = f"{region}: registry events enabled"
        try:
            config = one_off_iot(region, self._plan.endpoint_url).describe_event_configurations()
        except (ClientError, BotoCoreError) as exc:
            if self._plan.emulated:
                self._record(step, Outcome.SKIPPED, "the endpoint does not implement them")
            else:
                self._record(step, Outcome.FAILED, str(exc))
            return
        enabled = config.get("eventConfigurations", {})
        missing = [e for e in REGISTRY_EVENTS if not enabled.get(e, {}).get("Enabled")]  # type: ignore[call-overload]
        self._record(step, Outcome.FAILED if missing else Outcome.PASSED, ", ".join(missing))

    def _create_device(self, region: str) -> Device:
        iot = self._regions[region].iot
        name = f"iotdr-check-{uuid.uuid4().hex[:10]}"
        iot.create_thing(thingName=name, attributePayload={"attributes": {"iotdr-check": "1"}})
        created = iot.create_keys_and_certificate(setAsActive=True)
        device = Device(
            name=name,
            certificate_id=created["certificateId"],
            certificate_arn=created["certificateArn"],
            certificate_pem=created["certificatePem"],
            private_key=created["keyPair"]["PrivateKey"],
        )
        partition = partition_of(device.certificate_arn)
        iot.create_policy(
            policyName=device.policy_name, policyDocument=_policy(partition, region, name)
        )
        iot.attach_policy(policyName=device.policy_name, target=device.certificate_arn)
        iot.attach_thing_principal(thingName=name, principal=device.certificate_arn)
        self._record(f"{region}: created {name} with certificate and policy", Outcome.PASSED)
        return device

    def _emulated_replication(self) -> EmulatedReplication:
        primary, secondary = self._plan.regions
        outputs = stack_outputs(self._deploy[secondary].cloudformation, self._plan.region_stack)
        return EmulatedReplication(
            origin=self._regions[primary],
            peer=self._regions[secondary],
            peer_tables=Tables(
                replication=self._plan.table_name,
                applied=outputs["AppliedTable"],
                errors=outputs["ErrorTable"],
            ),
            primary_region=primary,
        )

    def _replicate(
        self,
        emulated: EmulatedReplication | None,
        message: tuple[str, dict[str, Any]],
        step: str,
        arrived: Callable[[], bool],
    ) -> None:
        if emulated is not None and not arrived():
            self._record(f"{step}: pipeline", Outcome.SKIPPED, RULES_DO_NOT_FIRE)
            report = emulated.replicate(*message)
            if not arrived():
                worker = (
                    f"applied {report.applied}, failed {report.failed}, skipped {report.skipped}"
                )
                self._record(step, Outcome.FAILED, f"not there; the worker {worker}")
                return
        deadline = time.monotonic() + self._timeout_s
        while not arrived():
            if time.monotonic() >= deadline:
                self._record(step, Outcome.FAILED, f"not there after {self._timeout_s:.0f} s")
                return
            time.sleep(2)
        self._record(step, Outcome.PASSED)

    def _device_in(self, region: str, device: Device) -> bool:
        iot = self._regions[region].iot
        try:
            principals = iot.list_thing_principals(thingName=device.name)["principals"]
            certificate = iot.describe_certificate(certificateId=device.certificate_id)
            policies = iot.list_attached_policies(
                target=certificate["certificateDescription"]["certificateArn"]
            )["policies"]
        except ClientError:
            return False
        return bool(principals) and device.policy_name in {p.get("policyName") for p in policies}

    def _thing_exists(self, region: str, name: str) -> bool:
        try:
            self._regions[region].iot.describe_thing(thingName=name)
        except ClientError:
            return False
        return True

    def _pub_sub(self, region: str, device: Device) -> None:
        step = f"{region}: MQTT publish/subscribe with the device's certificate"
        if self._plan.emulated:
            self._record(step, Outcome.SKIPPED, NO_DATA_PLANE)
            return
        with tempfile.TemporaryDirectory() as scratch:
            cert, key = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
            cert.write_text(device.certificate_pem)
            key.write_text(device.private_key)

            def context() -> ssl.SSLContext:
                tls = ssl.create_default_context()
                tls.load_cert_chain(cert, key)
                return tls

            result = check_broker(
                HealthCheckConfig(
                    host=data_endpoint(self._regions[region].iot),
                    tls_context=context,
                    client_id_prefix=device.name,
                    topic_prefix=f"iotdr/check/{device.name}",
                    timeout_s=20.0,
                )
            )
        self._record(step, Outcome.PASSED if result.healthy else Outcome.FAILED, result.detail)

    def _update_shadow(self, region: str, name: str) -> tuple[str, dict[str, Any]]:
        data = self._regions[region].iot_data
        state = {"reported": {"check": uuid.uuid4().hex[:8]}}
        data.update_thing_shadow(thingName=name, payload=json.dumps({"state": state}).encode())
        document = json.loads(data.get_thing_shadow(thingName=name)["payload"].read())
        self._record(f"{region}: shadow updated (version {document['version']})", Outcome.PASSED)
        # What AWS IoT publishes on .../shadow/update/documents (device-shadow-mqtt.html).
        payload = {
            "previous": None,
            "current": {"state": state, "metadata": {}, "version": document["version"]},
            "timestamp": int(time.time()),
        }
        return f"$aws/things/{name}/shadow/update/documents", payload

    def _deactivate(self, region: str, device: Device) -> None:
        """A certificate change that publishes no registry event: it travels
        as a CloudTrail management event (management.py)."""
        self._regions[region].iot.update_certificate(
            certificateId=device.certificate_id, newStatus="INACTIVE"
        )
        self._record(f"{region}: deactivated the certificate", Outcome.PASSED)

    def _certificate_status(self, region: str, device: Device) -> str | None:
        try:
            described = self._regions[region].iot.describe_certificate(
                certificateId=device.certificate_id
            )
        except ClientError:
            return None
        return described["certificateDescription"]["status"]

    def _delete_thing(self, region: str, device: Device) -> None:
        iot = self._regions[region].iot
        iot.detach_thing_principal(thingName=device.name, principal=device.certificate_arn)
        # The detach propagates asynchronously (propagation.py): wait for it.
        until_detached(lambda: iot.delete_thing(thingName=device.name), self._patience)
        self._record(f"{region}: deleted {device.name}", Outcome.PASSED)

    def _clean_up(self, device: Device) -> None:
        """Best effort in both regions: a failed check must not leave devices behind."""
        for region in self._plan.regions:
            problems = _remove_device(self._regions[region], device, self._patience)
            left = f" (left behind: {', '.join(problems)})" if problems else ""
            self._say(f"{region}: cleaned up {device.name}{left}")


def _remove_device(clients: RegionClients, device: Device, patience: Patience) -> list[str]:
    """Deletes the check's device in one region; returns the errors other than 'not there'.

    The deletes that follow a detach wait for it to propagate (propagation.py)."""
    arn = _arn_in(device, clients.region)
    iot = clients.iot
    actions: list[Callable[[], object]] = [
        lambda: clients.iot_data.delete_thing_shadow(thingName=device.name),
        lambda: iot.detach_thing_principal(thingName=device.name, principal=arn),
        lambda: until_detached(lambda: iot.delete_thing(thingName=device.name), patience),
        lambda: iot.detach_policy(policyName=device.policy_name, target=arn),
        # A certificate must be inactive before it can be deleted (DeleteCertificate docs).
        lambda: iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE"),
        lambda: until_detached(
            lambda: iot.delete_certificate(certificateId=device.certificate_id), patience
        ),
        lambda: iot.delete_policy(policyName=device.policy_name),
    ]
    problems = []
    for action in actions:
        try:
            action()
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                problems.append(exc.response["Error"]["Code"])
    return problems


def _arn_in(device: Device, region: str) -> str:
    """The certificate's ARN in `region`: the id is the same, the region label is not."""
    parts = device.certificate_arn.split(":")
    parts[3] = region
    return ":".join(parts)


def _thing_message(
    name: str, operation: str, attributes: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """A THING_EVENT as AWS IoT publishes it (registry-events.html)."""
    payload = {
        "eventType": "THING_EVENT",
        "eventId": uuid.uuid4().hex,
        "timestamp": int(time.time() * 1000),
        "operation": operation,
        "thingName": name,
        "thingTypeName": None,
        "attributes": attributes,
    }
    return f"$aws/events/thing/{name}/{operation.lower()}", payload


def _management_message(event_name: str, **parameters: str) -> tuple[str, dict[str, Any]]:
    """What the recorder writes for a CloudTrail-recorded call (management.py)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return management_payload(
        {
            "eventSource": "iot.amazonaws.com",
            "eventName": event_name,
            "eventTime": now,
            "requestParameters": parameters,
        }
    )


def _policy(partition: str, region: str, name: str) -> str:
    """What the check's pub/sub needs: its own client ids and topics."""
    arn = f"arn:{partition}:iot:{region}:*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/{name}-*"},
                {
                    "Effect": "Allow",
                    "Action": ["iot:Publish", "iot:Receive"],
                    "Resource": f"{arn}:topic/iotdr/check/{name}/*",
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": f"{arn}:topicfilter/iotdr/check/{name}/*",
                },
            ],
        }
    )
