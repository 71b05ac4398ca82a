"""The distributed engine's parts that need no Locust run: what travels
between master and workers, how the fleet is split, the faults for real
AWS (the Route 53 record on moto's Route 53; the worker-side outage with
real iptables in a network namespace this test creates)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iotdr.agent.core.failures import FailureKind
from iotdr.simulator import wire
from iotdr.simulator.aws_faults import (
    AwsFaultError,
    FailoverRecord,
    WorkerOutage,
    apply_worker_fault,
    cname_target,
    outage_commands,
)
from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.paho_driver import classify_paho

ROOT = Path(__file__).resolve().parents[2]


# -- wire ---------------------------------------------------------------------


def test_a_record_survives_the_trip_with_full_precision() -> None:
    record = DeviceRecord(
        client_id="iotdr-sim-00007",
        attempts=[-3.123456789, 5.000001],
        connections=[
            Connection(1, "region-a", "initial", -3.1, 0.987654321, 5.0),
            Connection(2, "region-b", "failover", 5.2, None, None),
        ],
        failures={"refused": 2},
        produced=12,
        acknowledged=11,
        resent=1,
        acknowledged_sequences={0, 1, 2, 5},
    )
    assert wire.record_from_wire(wire.record_to_wire(record)) == record


@pytest.mark.parametrize(("count", "workers"), [(200, 2), (7, 3), (2, 5), (100_000, 48), (1, 1)])
def test_shards_cover_the_fleet_once(count: int, workers: int) -> None:
    slices = wire.shards(count, workers)
    assert len(slices) == workers
    covered = [i for start, stop in slices for i in range(start, stop)]
    assert covered == list(range(count))
    sizes = [stop - start for start, stop in slices]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "refused"), FailureKind.REFUSED),
        (TimeoutError("timed out"), FailureKind.TIMEOUT),
        (socket.gaierror(-2, "Name or service not known"), FailureKind.RESOLVE),
        (ssl.SSLError(1, "handshake"), FailureKind.TLS),
        (ConnectionResetError(104, "reset"), FailureKind.JITR_HANGUP),
        (OSError(113, "No route to host"), FailureKind.TIMEOUT),
        (ValueError("odd"), FailureKind.OTHER),
    ],
)
def test_paho_failures_map_to_the_cores_kinds(exc: BaseException, kind: FailureKind) -> None:
    assert classify_paho(exc)[0] is kind


# -- the Route 53 record iotdr cloud deploy creates -----------------------------

PRIMARY = "abc-ats.iot.eu-west-1.amazonaws.com"
SECONDARY = "abc-ats.iot.eu-central-1.amazonaws.com"


@pytest.fixture
def route53_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, object]]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        route53 = boto3.client("route53", region_name="us-east-1")
        zone = route53.create_hosted_zone(Name="example.com.", CallerReference="iotdr")
        zone_id = zone["HostedZone"]["Id"].split("/")[-1]

        def health_check(name: str) -> str:
            check = route53.create_health_check(
                CallerReference=name,
                HealthCheckConfig={"Type": "HTTPS", "FullyQualifiedDomainName": name, "Port": 443},
            )
            return check["HealthCheck"]["Id"]

        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        parameters = {
            "HostedZoneId": zone_id,
            "RecordName": "iot.example.com",
            "PrimaryRegion": "eu-west-1",
            "SecondaryRegion": "eu-central-1",
            "PrimaryEndpoint": PRIMARY,
            "SecondaryEndpoint": SECONDARY,
            "PrimaryHealthCheckId": health_check(PRIMARY),
            "SecondaryHealthCheckId": health_check(SECONDARY),
        }
        cloudformation.create_stack(
            StackName="iotdr-dns",
            TemplateBody=(ROOT / "cloud" / "templates" / "dns.yaml").read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
        yield route53, cloudformation


def test_a_cname_fault_moves_the_failover_record_and_back(
    route53_stack: tuple[object, object],
) -> None:
    route53, cloudformation = route53_stack
    record = FailoverRecord.from_stack(cloudformation, "iotdr-dns")  # type: ignore[arg-type]
    assert record.record_name == "iot.example.com"
    endpoints = record.endpoints(route53)  # type: ignore[arg-type]
    assert endpoints == {"primary": PRIMARY, "secondary": SECONDARY}

    record.point_at(route53, cname_target("secondary", endpoints), ttl=5)  # type: ignore[arg-type]
    sets = {
        s["SetIdentifier"]: s
        for s in route53.list_resource_record_sets(  # type: ignore[attr-defined]
            HostedZoneId=record.hosted_zone_id
        )["ResourceRecordSets"]
        if s["Type"] == "CNAME"
    }
    assert sets["primary"]["ResourceRecords"] == [{"Value": SECONDARY}]
    assert sets["primary"]["TTL"] == 5
    assert sets["primary"]["Failover"] == "PRIMARY"  # still failover routing,
    assert "HealthCheckId" in sets["primary"]  # on the same health check
    assert sets["secondary"]["ResourceRecords"] == [{"Value": SECONDARY}]

    record.point_at(route53, cname_target("primary", endpoints))  # type: ignore[arg-type]
    assert record.endpoints(route53)["primary"] == PRIMARY  # type: ignore[arg-type]


def test_a_missing_record_is_one_clear_error(route53_stack: tuple[object, object]) -> None:
    route53, _ = route53_stack
    zone_id = route53.list_hosted_zones()["HostedZones"][0]["Id"]  # type: ignore[attr-defined]
    record = FailoverRecord(zone_id.split("/")[-1], "nothing.example.com")
    with pytest.raises(AwsFaultError, match=r"nothing\.example\.com: no CNAME record set"):
        record.endpoints(route53)  # type: ignore[arg-type]


# -- the worker-side outage -------------------------------------------------------


def test_outage_rules_reject_or_drop_both_directions() -> None:
    kill = outage_commands("primary", ["192.0.2.1"], "reject")
    assert kill[1][-4:] == ["-j", "REJECT", "--reject-with", "tcp-reset"]
    blackhole = outage_commands("primary", ["192.0.2.1", "192.0.2.2"], "drop")
    assert len(blackhole) == 1 + 2 * 2  # flush, then requests and replies per address


def test_worker_faults_refuse_the_hosts_own_firewall() -> None:
    with pytest.raises(AwsFaultError, match="own network namespace"):
        apply_worker_fault("", {"fault": "kill", "region": "primary", "hosts": ["x"]})


_PROBE = """
import socket, sys
try:
    socket.create_connection(
        ("127.0.0.2", int(sys.argv[1])), timeout=1.0, source_address=("127.0.0.1", 0)
    ).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""


@pytest.mark.testbed
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
def test_a_worker_outage_cuts_the_region_inside_the_namespace_only() -> None:
    netns = f"iotdr-t10-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    server: subprocess.Popen[str] | None = None
    try:
        exec_ = ["ip", "netns", "exec", netns]
        subprocess.run([*exec_, "ip", "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(
            [*exec_, sys.executable, "-c",
             "import socket,time\ns=socket.create_server(('127.0.0.2', 0))\n"
             "print(s.getsockname()[1], flush=True)\ntime.sleep(60)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        port = server.stdout.readline().strip()

        def probe() -> str:
            done = subprocess.run(
                [*exec_, sys.executable, "-c", _PROBE, port],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            return done.stdout.strip()

        assert probe() == "open"
        # The region at 127.0.0.2, the devices at 127.0.0.1 (a TCP reset to
        # them must not match the region's rules).
        fault = {"region": "primary", "hosts": ["127.0.0.2"]}
        apply_worker_fault(netns, {**fault, "fault": "kill"})
        assert probe() == "refused"  # a dead region: TCP reset
        apply_worker_fault(netns, {**fault, "fault": "restore"})
        assert probe() == "open"
        apply_worker_fault(netns, {**fault, "fault": "blackhole"})
        assert probe() == "timeout"  # a dead path: nothing comes back
        WorkerOutage(netns).heal("primary")
        assert probe() == "open"
    finally:
        if server is not None:
            server.kill()
            server.communicate()
        subprocess.run(["ip", "netns", "delete", netns], check=False)
