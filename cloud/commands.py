"""`iotdr cloud ...`: thin CLI over the deployment, sync and compare tools.

    iotdr cloud sync region-to-region --primary-region R1 --secondary-region R2 [--workers N]
    iotdr cloud sync region-to-table  --primary-region R1 --table NAME
    iotdr cloud compare devices|shadows --primary-region R1 --secondary-region R2
    iotdr cloud deploy --primary-region R1 --secondary-region R2 [--hosted-zone-id Z
                       --record-name N]
    iotdr cloud destroy --primary-region R1 --secondary-region R2
    iotdr cloud check-deployment --primary-region R1 --secondary-region R2
    iotdr cloud replay --region R
    iotdr cloud jitr-pending --region R --jitr-ca-certificate-id ID [--jitr-policy-name P]

`register` adds the `cloud` command to the `iotdr` parser; every leaf sets
`func`, which returns the exit code (0: done and equal, 1: errors or
differences found). `--endpoint-url` points every client at one endpoint
(moto's server, a VPC endpoint).
"""

from __future__ import annotations

import argparse
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from iotdr.cloud.clients import RegionClients, retry_config
from iotdr.cloud.compare import compare_devices, compare_shadows
from iotdr.cloud.deploy import DeploymentPlan, deploy, destroy
from iotdr.cloud.deployment_check import DeploymentCheck
from iotdr.cloud.errors import DeploymentError
from iotdr.cloud.jitr_pending import register_pending
from iotdr.cloud.registry_apply import CertificateMode
from iotdr.cloud.replay import replay_failed_events
from iotdr.cloud.stacks import stack_outputs
from iotdr.cloud.sync import region_to_region, region_to_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = subparsers.add_parser("cloud", help="deploy, check, sync and compare two AWS regions")
    verbs = cloud.add_subparsers(dest="cloud_command", required=True)

    sync = verbs.add_parser("sync", help="copy existing devices from the primary region")
    sync.add_argument("mode", choices=["region-to-region", "region-to-table"])
    _regions(sync)
    sync.add_argument("--workers", type=int, default=10, help="parallel threads (default 10)")
    sync.add_argument("--table", default="iotdr-replication", help="replication table name")
    sync.add_argument(
        "--certificates",
        choices=[m.value for m in CertificateMode],
        default=CertificateMode.COMPLETE.value,
        help="copy certificates and policies (complete) or leave them to JITR (jitr)",
    )
    sync.set_defaults(func=_sync)

    compare = verbs.add_parser("compare", help="list differences between the two regions")
    compare.add_argument("what", choices=["devices", "shadows"])
    _regions(compare)
    compare.add_argument("--workers", type=int, default=10)
    compare.set_defaults(func=_compare)

    register_deployment(verbs)


def _regions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--primary-region", required=True)
    parser.add_argument("--secondary-region", required=True)
    parser.add_argument("--prefix", default="", help="only things whose name starts with this")
    parser.add_argument("--endpoint-url", help="send every AWS call to this endpoint")


def _clients(args: argparse.Namespace) -> tuple[RegionClients, RegionClients]:
    return (
        RegionClients.create(args.primary_region, endpoint_url=args.endpoint_url),
        RegionClients.create(args.secondary_region, endpoint_url=args.endpoint_url),
    )


def _sync(args: argparse.Namespace) -> int:
    primary, secondary = _clients(args)
    if args.mode == "region-to-table":
        report = region_to_table(primary, table=args.table, prefix=args.prefix)
    else:
        report = region_to_region(
            primary,
            secondary,
            workers=args.workers,
            prefix=args.prefix,
            mode=CertificateMode(args.certificates),
        )
    for name, error in sorted(report.errors.items()):
        print(f"error: {name}: {error}", file=sys.stderr)
    print(f"synced {report.synced}, errors {len(report.errors)}, {report.elapsed_s:.1f} s")
    return 1 if report.errors else 0


def _compare(args: argparse.Namespace) -> int:
    primary, secondary = _clients(args)
    compare = compare_devices if args.what == "devices" else compare_shadows
    differences = compare(primary, secondary, prefix=args.prefix, workers=args.workers)
    for difference in differences:
        print(f"{difference.name}\t{difference.what}")
    print(f"{len(differences)} difference(s)", file=sys.stderr)
    return 1 if differences else 0


def register_deployment(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = verbs.add_parser("deploy", help="package the Lambdas and deploy the stacks")
    _deployment(deploy)
    deploy.add_argument("--hosted-zone-id", help="Route 53 zone for the failover records")
    deploy.add_argument("--record-name", help="the CNAME devices use, e.g. iot.example.com")
    deploy.add_argument(
        "--certificates",
        choices=[m.value for m in CertificateMode],
        default=CertificateMode.COMPLETE.value,
    )
    deploy.add_argument("--jitr-policy-name", default="", help="policy for JITR certificates")
    deploy.add_argument(
        "--jitr-ca-certificate-id",
        default="",
        help="the device CA JITR registers for (jitr mode; registered in both regions)",
    )
    deploy.set_defaults(func=_deploy)

    destroy = verbs.add_parser("destroy", help="delete what deploy created, in reverse")
    _deployment(destroy)
    destroy.set_defaults(func=_destroy)

    replay = verbs.add_parser(
        "replay", help="put failed replication records back into the pipeline (replay.py)"
    )
    replay.add_argument("--region", required=True, help="the region whose failures to replay")
    replay.add_argument("--stack-prefix", default="iotdr")
    replay.add_argument("--table", default="iotdr-replication", help="replication table name")
    replay.add_argument("--endpoint-url", help="send every AWS call to this endpoint")
    replay.set_defaults(func=_replay)

    pending = verbs.add_parser(
        "jitr-pending", help="finish JITR for certificates left PENDING_ACTIVATION (jitr.py)"
    )
    pending.add_argument("--region", required=True)
    pending.add_argument("--jitr-ca-certificate-id", required=True)
    pending.add_argument("--jitr-policy-name", default="")
    pending.add_argument("--endpoint-url", help="send every AWS call to this endpoint")
    pending.set_defaults(func=_jitr_pending)

    check = verbs.add_parser("check-deployment", help="one device through the deployed regions")
    _deployment(check)
    check.add_argument("--timeout", type=float, default=120.0, help="seconds per replication step")
    check.set_defaults(func=_check_deployment)


def _deployment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--primary-region", required=True)
    parser.add_argument("--secondary-region", required=True)
    parser.add_argument("--stack-prefix", default="iotdr")
    parser.add_argument("--table", default="iotdr-replication", help="replication table name")
    parser.add_argument(
        "--endpoint-url",
        help="send every AWS call to this emulator (moto); what it lacks is skipped",
    )


def _plan(args: argparse.Namespace) -> DeploymentPlan:
    return DeploymentPlan(
        primary_region=args.primary_region,
        secondary_region=args.secondary_region,
        hosted_zone_id=getattr(args, "hosted_zone_id", None),
        record_name=getattr(args, "record_name", None),
        stack_prefix=args.stack_prefix,
        table_name=args.table,
        certificate_mode=CertificateMode(getattr(args, "certificates", "complete")),
        jitr_policy_name=getattr(args, "jitr_policy_name", ""),
        jitr_ca_certificate_id=getattr(args, "jitr_ca_certificate_id", ""),
        endpoint_url=args.endpoint_url,
    )


def _deploy(args: argparse.Namespace) -> int:
    try:
        deploy(_plan(args))
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _destroy(args: argparse.Namespace) -> int:
    try:
        destroy(_plan(args))
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _replay(args: argparse.Namespace) -> int:
    session, config, url = boto3.Session(), retry_config(), args.endpoint_url
    region = args.region
    cloudformation = session.client(
        "cloudformation", region_name=region, config=config, endpoint_url=url
    )
    try:
        bucket = stack_outputs(cloudformation, f"{args.stack_prefix}-region")["FailedEventsBucket"]
    except (ClientError, KeyError) as exc:
        print(
            f"error: {region}: the region stack has no failed-events bucket ({exc})",
            file=sys.stderr,
        )
        return 1
    report = replay_failed_events(
        s3=session.client("s3", region_name=region, config=config, endpoint_url=url),
        bucket=bucket,
        dynamodb=session.client("dynamodb", region_name=region, config=config, endpoint_url=url),
        table=args.table,
        region=region,
        now_s=int(time.time()),
        streams=session.client(
            "dynamodbstreams",
            region_name=region,
            endpoint_url=url,
            # The regional endpoint: AWS answers there too, and moto only there.
            config=config.merge(Config(account_id_endpoint_mode="disabled")),
        ),
    )
    for key, why in sorted(report.left.items()):
        print(f"left: s3://{bucket}/{key}: {why}", file=sys.stderr)
    left = len(report.left)
    print(f"replayed {report.items} record(s) from {report.objects} object(s), left {left}")
    return 1 if report.left else 0


def _jitr_pending(args: argparse.Namespace) -> int:
    iot = RegionClients.create(args.region, endpoint_url=args.endpoint_url).iot
    done, left = register_pending(
        iot, policy_name=args.jitr_policy_name, ca_certificate_id=args.jitr_ca_certificate_id
    )
    for certificate_id, why in sorted(left.items()):
        print(f"left: {certificate_id}: {why}", file=sys.stderr)
    print(f"registered {len(done)}, left {len(left)}")
    return 1 if left else 0


def _check_deployment(args: argparse.Namespace) -> int:
    check = DeploymentCheck(_plan(args), timeout_s=args.timeout)
    passed = check.run()
    print("deployment check " + ("passed" if passed else "FAILED"))
    return 0 if passed else 1
