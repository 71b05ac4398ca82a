"""Lambda entry points. Each builds everything it needs per invocation from
its environment (set by templates/region.yaml): no state in module globals."""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from iotdr.cloud.clients import RegionClients, retry_config
from iotdr.cloud.health import HealthCheckConfig, check_broker
from iotdr.cloud.jitr import register_just_in_time
from iotdr.cloud.management import record_management_event
from iotdr.cloud.reconcile import reconcile
from iotdr.cloud.records import stream_records
from iotdr.cloud.registry_apply import CertificateMode
from iotdr.cloud.retry_runner import run_retries
from iotdr.cloud.worker import Tables, Worker


def _worker(env: dict[str, str]) -> Worker:
    region = env["AWS_REGION"]
    return Worker(
        local=RegionClients.create(region),
        peer=RegionClients.create(env["PEER_REGION"]),
        tables=Tables(
            replication=env["REPLICATION_TABLE"],
            applied=env["APPLIED_TABLE"],
            errors=env["ERROR_TABLE"],
        ),
        default_active_region=env["PRIMARY_REGION"],
        mode=CertificateMode(env.get("CERTIFICATE_MODE", "complete")),
    )


def replication_handler(event: dict[str, Any], _context: object) -> dict[str, Any]:
    """DynamoDB stream batch; answers with ReportBatchItemFailures' shape."""
    report = _worker(dict(os.environ)).process_stream(stream_records(event))
    failures = (
        [{"itemIdentifier": report.unrecorded_sequence}] if report.unrecorded_sequence else []
    )
    return {
        "batchItemFailures": failures,
        "applied": report.applied,
        "skipped": report.skipped,
        "failed": report.failed,
    }


def retry_handler(_event: dict[str, Any], _context: object) -> dict[str, int]:
    env = dict(os.environ)
    worker = _worker(env)
    report = run_retries(
        worker,
        dynamodb=boto3.client("dynamodb", config=retry_config()),
        error_table=env["ERROR_TABLE"],
        sqs=boto3.client("sqs", config=retry_config()),
        dead_letter_queue_url=env.get("DEAD_LETTER_QUEUE_URL"),
    )
    return {
        "resolved": report.resolved,
        "still_failing": report.still_failing,
        "dead_lettered": report.dead_lettered,
        "already_running": int(report.already_running),
    }


def management_event_handler(event: dict[str, Any], _context: object) -> dict[str, str]:
    """EventBridge: one CloudTrail-recorded IoT call into the local replica (management.py)."""
    item = record_management_event(
        boto3.client("dynamodb", config=retry_config()),
        table=os.environ["REPLICATION_TABLE"],
        event=event,
        region=os.environ["AWS_REGION"],
        now_s=int(time.time()),
    )
    return {"pk": str(item["pk"]), "topic": str(item["topic"])}


def reconcile_handler(_event: dict[str, Any], _context: object) -> dict[str, Any]:
    """Schedule: the follower region pulls certificate and policy state (reconcile.py)."""
    env = dict(os.environ)
    local, peer = RegionClients.create(env["AWS_REGION"]), RegionClients.create(env["PEER_REGION"])
    active = _worker(env).active_region()
    if active == local.region:
        return {"skipped": f"{local.region} is the active region"}
    report = reconcile(
        peer,
        local,
        mode=CertificateMode(env.get("CERTIFICATE_MODE", "complete")),
        applied_table=env["APPLIED_TABLE"],
        things_per_run=int(env.get("RECONCILE_THINGS_PER_RUN", "2000")),
    )
    return {
        "certificates": report.certificates_checked,
        "policies": report.policies_checked,
        "things": report.things_checked,
        "fleet_pass_complete": report.fleet_pass_complete,
        "errors": len(report.errors),
    }


def jitr_handler(event: dict[str, Any], _context: object) -> str:
    return register_just_in_time(
        boto3.client("iot", config=retry_config()),
        event,
        policy_name=os.environ.get("JITR_POLICY_NAME", ""),
        expected_ca_id=os.environ["JITR_CA_CERTIFICATE_ID"],
    )


def health_handler(_event: dict[str, Any], _context: object) -> dict[str, Any]:
    """Schedule (every minute): one MQTT check, put as the metric Route 53's alarm watches."""
    env = dict(os.environ)
    secret = json.loads(
        boto3.client("secretsmanager", config=retry_config()).get_secret_value(
            SecretId=env["HEALTH_CREDENTIALS_SECRET"]
        )["SecretString"]
    )
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
        cert.write_text(secret["certificatePem"])
        key.write_text(secret["privateKey"])

        def context() -> ssl.SSLContext:
            tls = ssl.create_default_context()
            tls.load_cert_chain(cert, key)
            return tls

        config = HealthCheckConfig(host=env["HEALTH_ENDPOINT"], tls_context=context)
        result = check_broker(config)
    boto3.client("cloudwatch", config=retry_config()).put_metric_data(
        Namespace="iotdr",
        MetricData=[
            {
                "MetricName": "BrokerHealthy",
                "Dimensions": [{"Name": "Region", "Value": env["AWS_REGION"]}],
                "Value": 1.0 if result.healthy else 0.0,
            }
        ],
    )
    return {"healthy": result.healthy, "detail": result.detail}
