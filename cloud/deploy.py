"""`iotdr cloud deploy` and `destroy`: the stacks of templates/ in two regions, in order.

Deploy order (destroy is the reverse, and also switches registry events off):

1. the Lambda code, zipped once and uploaded to a bucket in each region
   (Lambda reads code only from a bucket in its own region);
2. the health checker's credentials in each region (health_credentials.py);
3. `replication-table` in the primary: the global table with a replica in
   each region; each region's stack needs its replica's stream ARN;
4. `region` in the primary, then in the secondary;
5. registry events switched on in both regions (UpdateEventConfigurations:
   CloudFormation has no resource for it);
6. `dns` in the primary (Route 53 is global) when a hosted zone is given:
   it needs both regions' health check ids and IoT endpoints.

Behind `--endpoint-url` (an emulator such as moto), a step the endpoint
does not implement is reported as "skipped: <reason>" instead of failing;
against AWS the same failure stops the deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from iotdr.cloud.clients import retry_config
from iotdr.cloud.errors import DeploymentError
from iotdr.cloud.health_credentials import (
    delete_health_credentials,
    ensure_health_credentials,
    partition_of,
)
from iotdr.cloud.lambda_package import LambdaPackage, build_lambda_package
from iotdr.cloud.registry_apply import CertificateMode
from iotdr.cloud.stacks import delete_stack, deploy_stack, stack_outputs, stack_status

if TYPE_CHECKING:
    from types_boto3_cloudformation.client import CloudFormationClient
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_iot.client import IoTClient
    from types_boto3_s3.client import S3Client
    from types_boto3_secretsmanager.client import SecretsManagerClient
    from types_boto3_sts.client import STSClient

Say = Callable[[str], None]

# The registry events the topic rules record (registry-events.html).
REGISTRY_EVENTS = (
    "THING",
    "THING_TYPE",
    "THING_TYPE_ASSOCIATION",
    "THING_GROUP",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
)


@dataclass(frozen=True, kw_only=True)
class DeploymentPlan:
    primary_region: str
    secondary_region: str
    hosted_zone_id: str | None = None
    record_name: str | None = None
    stack_prefix: str = "iotdr"
    table_name: str = "iotdr-replication"
    certificate_mode: CertificateMode = CertificateMode.COMPLETE
    jitr_policy_name: str = ""
    jitr_ca_certificate_id: str = ""
    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if self.primary_region == self.secondary_region:
            raise DeploymentError("the primary and secondary regions must differ")
        if (self.hosted_zone_id is None) != (self.record_name is None):
            raise DeploymentError("--hosted-zone-id and --record-name go together")
        if self.certificate_mode is CertificateMode.JITR and not self.jitr_ca_certificate_id:
            raise DeploymentError(
                "--certificates jitr needs --jitr-ca-certificate-id: the CA whose devices"
                " register just in time"
            )

    @property
    def regions(self) -> tuple[str, str]:
        return (self.primary_region, self.secondary_region)

    @property
    def emulated(self) -> bool:
        """An endpoint URL means an emulator: what it lacks is skipped, not fatal."""
        return self.endpoint_url is not None

    def peer(self, region: str) -> str:
        return self.secondary_region if region == self.primary_region else self.primary_region

    @property
    def table_stack(self) -> str:
        return f"{self.stack_prefix}-replication-table"

    @property
    def region_stack(self) -> str:
        return f"{self.stack_prefix}-region"

    @property
    def dns_stack(self) -> str:
        return f"{self.stack_prefix}-dns"


@dataclass(frozen=True)
class DeployClients:
    """The clients deploy and destroy use in one region."""

    region: str
    cloudformation: CloudFormationClient
    s3: S3Client
    sts: STSClient
    secretsmanager: SecretsManagerClient
    iot: IoTClient
    dynamodb: DynamoDBClient

    @classmethod
    def create(cls, region: str, *, endpoint_url: str | None = None) -> DeployClients:
        session, config, url = boto3.Session(), retry_config(), endpoint_url
        return cls(
            region=region,
            cloudformation=session.client(
                "cloudformation", region_name=region, config=config, endpoint_url=url
            ),
            s3=session.client("s3", region_name=region, config=config, endpoint_url=url),
            sts=session.client("sts", region_name=region, config=config, endpoint_url=url),
            secretsmanager=session.client(
                "secretsmanager", region_name=region, config=config, endpoint_url=url
            ),
            iot=session.client("iot", region_name=region, config=config, endpoint_url=url),
            dynamodb=session.client(
                "dynamodb", region_name=region, config=config, endpoint_url=url
            ),
        )


@dataclass
class DeploymentResult:
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # region -> stack outputs
    skipped: list[str] = field(default_factory=list)


def template(name: str) -> str:
    return resources.files("iotdr.cloud").joinpath("templates", name).read_text()


def code_bucket(account: str, region: str) -> str:
    return f"iotdr-code-{account}-{region}"


def deploy(plan: DeploymentPlan, *, say: Say = print) -> DeploymentResult:
    clients = {r: DeployClients.create(r, endpoint_url=plan.endpoint_url) for r in plan.regions}
    primary = clients[plan.primary_region]
    identity = primary.sts.get_caller_identity()
    account, partition = identity["Account"], partition_of(identity["Arn"])
    result = DeploymentResult()
    package = build_lambda_package()
    say(f"lambda package {package.key} ({len(package.archive) // 1024} KiB)")
    for region in plan.regions:
        _upload_code(clients[region], code_bucket(account, region), package, say)

    deploy_stack(
        primary.cloudformation,
        plan.table_stack,
        template_body=template("replication-table.yaml"),
        parameters={"TableName": plan.table_name, "SecondaryRegion": plan.secondary_region},
        say=say,
    )
    if plan.certificate_mode is CertificateMode.JITR:
        for region in plan.regions:
            check_jitr_prerequisites(plan, clients[region].iot, region)
            say(f"{region}: JITR prerequisites met (CA {plan.jitr_ca_certificate_id})")
    for region in plan.regions:
        client = clients[region]
        secret_arn = ensure_health_credentials(
            client.iot, client.secretsmanager, region=region, account=account, partition=partition
        )
        say(f"{region}: health checker credentials in {secret_arn}")
        owned = _registry_events_owned(plan, client)
        result.outputs[region] = deploy_stack(
            client.cloudformation,
            plan.region_stack,
            template_body=template("region.yaml"),
            parameters={
                "PeerRegion": plan.peer(region),
                "PrimaryRegion": plan.primary_region,
                "ReplicationTableName": plan.table_name,
                "ReplicationStreamArn": _stream_arn(client.dynamodb, plan.table_name, region),
                "CodeBucket": code_bucket(account, region),
                "CodeKey": package.key,
                "CertificateMode": plan.certificate_mode.value,
                "JitrPolicyName": plan.jitr_policy_name,
                "JitrCaCertificateId": plan.jitr_ca_certificate_id,
                "HealthEndpoint": data_endpoint(client.iot),
                "HealthCredentialsSecretArn": secret_arn,
                "RegistryEventsOwned": "true" if owned else "false",
            },
            say=say,
        )
    for region in plan.regions:
        _enable_registry_events(plan, clients[region], result, say)
    if plan.hosted_zone_id and plan.record_name:
        result.outputs["dns"] = _deploy_dns(plan, clients, result, say)
    say("deployed")
    return result


def destroy(plan: DeploymentPlan, *, say: Say = print) -> None:
    clients = {r: DeployClients.create(r, endpoint_url=plan.endpoint_url) for r in plan.regions}
    primary = clients[plan.primary_region]
    account = primary.sts.get_caller_identity()["Account"]
    delete_stack(primary.cloudformation, plan.dns_stack, say=say)
    owned = {
        region: _outputs(clients[region], plan.region_stack).get("RegistryEventsOwned") != "false"
        for region in plan.regions
    }
    for region in reversed(plan.regions):
        # CloudFormation refuses to delete a bucket with objects in it: the
        # failed-events bucket goes with the stack, kept records and all.
        if stack_status(clients[region].cloudformation, plan.region_stack) is not None:
            bucket = stack_outputs(clients[region].cloudformation, plan.region_stack).get(
                "FailedEventsBucket"
            )
            if bucket:
                _empty_bucket(clients[region].s3, bucket, say)
        delete_stack(clients[region].cloudformation, plan.region_stack, say=say)
    delete_stack(primary.cloudformation, plan.table_stack, say=say)
    for region in reversed(plan.regions):
        # Registry events are published (and billed as messages) until
        # switched off: off again, unless they were on before the first deploy.
        if owned.get(region, True):
            _set_registry_events(plan, clients[region], DeploymentResult(), say, enabled=False)
        else:
            say(f"{region}: registry events left on (they were on before iotdr)")
    for region in reversed(plan.regions):
        client = clients[region]
        if delete_health_credentials(client.iot, client.secretsmanager):
            say(f"{region}: health checker credentials deleted")
        _delete_bucket(client.s3, code_bucket(account, region), say)
    say("destroyed")


def check_jitr_prerequisites(plan: DeploymentPlan, iot: IoTClient, region: str) -> None:
    """JITR works only with the device CA registered in the region, ACTIVE and
    with auto-registration on (auto-register-device-cert.html), and the
    policy it attaches present there."""
    ca = plan.jitr_ca_certificate_id
    try:
        description = iot.describe_ca_certificate(certificateId=ca)["certificateDescription"]
    except ClientError as exc:
        raise DeploymentError(
            f"{region}: CA certificate {ca} is not registered here"
            f" ({exc.response['Error']['Code']}); register it with RegisterCACertificate"
            " --allow-auto-registration in both regions"
        ) from exc
    if description.get("status") != "ACTIVE":
        raise DeploymentError(f"{region}: CA certificate {ca} is {description.get('status')}")
    if description.get("autoRegistrationStatus") != "ENABLE":
        raise DeploymentError(
            f"{region}: CA certificate {ca} has auto-registration off"
            " (UpdateCACertificate --new-auto-registration-status ENABLE)"
        )
    if plan.jitr_policy_name:
        try:
            iot.get_policy(policyName=plan.jitr_policy_name)
        except ClientError as exc:
            raise DeploymentError(
                f"{region}: JITR policy {plan.jitr_policy_name} does not exist here"
            ) from exc


def data_endpoint(iot: IoTClient) -> str:
    """The region's ATS data endpoint, what devices and the health check connect to."""
    return iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]


def one_off_iot(region: str, endpoint_url: str | None) -> IoTClient:
    """For one-off calls (event configurations): two attempts, so an endpoint
    without them (moto answers 500) does not spend a minute in backoff."""
    return boto3.client(
        "iot", region_name=region, endpoint_url=endpoint_url, config=retry_config(max_attempts=2)
    )


def _upload_code(client: DeployClients, bucket: str, package: LambdaPackage, say: Say) -> None:
    try:
        if client.region == "us-east-1":  # the one region that refuses a LocationConstraint
            client.s3.create_bucket(Bucket=bucket)
        else:
            client.s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": client.region},  # type: ignore[typeddict-item]
            )
        say(f"{client.region}: created bucket {bucket}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    client.s3.put_object(Bucket=bucket, Key=package.key, Body=package.archive)
    say(f"{client.region}: uploaded s3://{bucket}/{package.key}")


def _empty_bucket(s3: S3Client, bucket: str, say: Say) -> None:
    deleted = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
                deleted += 1
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
    if deleted:
        say(f"emptied bucket {bucket} ({deleted} object(s))")


def _delete_bucket(s3: S3Client, bucket: str, say: Say) -> None:
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
        return
    say(f"deleted bucket {bucket}")


def _stream_arn(dynamodb: DynamoDBClient, table: str, region: str) -> str:
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        raise DeploymentError(
            f"{region}: the global table {table} has no replica here after its stack completed"
            " (moto does not implement AWS::DynamoDB::GlobalTable: create the table yourself)"
        ) from exc
    arn = description.get("LatestStreamArn")
    if not arn:
        raise DeploymentError(f"{region}: table {table} has no stream")
    return arn


def _outputs(client: DeployClients, stack: str) -> dict[str, str]:
    if stack_status(client.cloudformation, stack) is None:
        return {}
    return stack_outputs(client.cloudformation, stack)


def _registry_events_owned(plan: DeploymentPlan, client: DeployClients) -> bool:
    """Whether iotdr switched registry events on (so destroy switches them off):
    kept from the first deploy; on the first, true unless all were on already."""
    earlier = _outputs(client, plan.region_stack).get("RegistryEventsOwned")
    if earlier is not None:
        return earlier != "false"
    try:
        configurations = one_off_iot(
            client.region, plan.endpoint_url
        ).describe_event_configurations()["eventConfigurations"]
    except (ClientError, BotoCoreError):
        return True  # unknown (an emulator): iotdr switches them on, and off again
    return not all(
        configurations.get(event, {}).get("Enabled")  # type: ignore[call-overload]
        for event in REGISTRY_EVENTS
    )


def _enable_registry_events(
    plan: DeploymentPlan, client: DeployClients, result: DeploymentResult, say: Say
) -> None:
    _set_registry_events(plan, client, result, say, enabled=True)


def _set_registry_events(
    plan: DeploymentPlan,
    client: DeployClients,
    result: DeploymentResult,
    say: Say,
    *,
    enabled: bool,
) -> None:
    verb = "enabling" if enabled else "disabling"
    try:
        one_off_iot(client.region, plan.endpoint_url).update_event_configurations(
            eventConfigurations={event: {"Enabled": enabled} for event in REGISTRY_EVENTS}  # type: ignore[misc]
        )
    except (ClientError, BotoCoreError) as exc:
        if not plan.emulated:
            raise DeploymentError(f"{client.region}: {verb} registry events: {exc}") from exc
        note = f"{client.region}: {verb} registry events: the endpoint refused ({_short(exc)})"
        result.skipped.append(note)
        say(f"skipped: {note}")
        return
    say(f"{client.region}: registry events {'enabled' if enabled else 'disabled'}")


def _deploy_dns(
    plan: DeploymentPlan, clients: dict[str, DeployClients], result: DeploymentResult, say: Say
) -> dict[str, str]:
    primary, secondary = clients[plan.primary_region], clients[plan.secondary_region]
    return deploy_stack(
        primary.cloudformation,
        plan.dns_stack,
        template_body=template("dns.yaml"),
        parameters={
            "HostedZoneId": plan.hosted_zone_id or "",
            "RecordName": plan.record_name or "",
            "PrimaryRegion": plan.primary_region,
            "SecondaryRegion": plan.secondary_region,
            "PrimaryEndpoint": data_endpoint(primary.iot),
            "SecondaryEndpoint": data_endpoint(secondary.iot),
            "PrimaryHealthCheckId": result.outputs[plan.primary_region]["HealthCheckId"],
            "SecondaryHealthCheckId": result.outputs[plan.secondary_region]["HealthCheckId"],
        },
        say=say,
    )


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160]
