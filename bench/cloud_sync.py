"""Region-to-region sync benchmark against moto's server (a separate process).

Creates --things things in the primary (every 100th with a certificate, a
policy, a group and a shadow, as in the tests), then runs
`iotdr.cloud.sync.region_to_region` once per --workers value into a fresh
secondary region (a new region per run, so every run starts empty). Prints
things/s and errors (must be 0), and where the time goes per thing:

- in API calls: wall time inside botocore's `_make_api_call` (boto3's
  serialising, signing and parsing, the HTTP round trip and moto's work),
  summed over the worker threads;
- ours: the workers' remaining busy time (sync.py, registry_apply.py,
  shadow_apply.py, merge.py, the thread pool), summed the same way;
- CPU: this process's CPU (ours + boto3) and the moto server's, from
  /proc, to show which side is the bottleneck.

The reference solution reports about 4 things/s (2,400 things in 10 min
with 20 workers) on real AWS, where each call is a network round trip and
AWS IoT's registry is throttled at 10-100 TPS per account.

Usage: python bench/cloud_sync.py [--things 10000] [--workers 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.client import BaseClient

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.emulator import moto_server
from iotdr.cloud.sync import region_to_region

PRIMARY = "us-east-1"
SECONDARIES = ["us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "ap-northeast-1"]
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class CallTimer:
    """Wall time spent inside boto3 API calls, across threads."""

    calls: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def install(self) -> None:
        # Private, but the one place every boto3 call goes through.
        original: Callable[..., Any] = getattr(BaseClient, "_make_api_call")  # noqa: B009
        timer = self

        def timed(client: BaseClient, operation: str, params: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                elapsed = time.perf_counter() - started
                with timer._lock:
                    timer.calls += 1
                    timer.seconds += elapsed

        setattr(BaseClient, "_make_api_call", timed)  # noqa: B010

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            return self.calls, self.seconds


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def populate(primary: RegionClients, count: int) -> None:
    iot, data = primary.iot, primary.iot_data
    iot.create_thing_type(thingTypeName="sensor")
    iot.create_thing_group(thingGroupName="site")
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_policy(
        policyName="sensor-policy",
        policyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": f"arn:aws:iot:{PRIMARY}:123456789012:client/*",
                    }
                ],
            }
        ),
    )
    iot.attach_policy(policyName="sensor-policy", target=cert["certificateArn"])
    for index in range(count):
        name = f"dev-{index:05d}"
        iot.create_thing(
            thingName=name,
            thingTypeName="sensor",
            attributePayload={"attributes": {"serial": str(index)}},
        )
        if index % 100 == 0:
            iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
            iot.add_thing_to_thing_group(thingGroupName="site", thingName=name)
            data.update_thing_shadow(
                thingName=name, payload=json.dumps({"state": {"reported": {"i": index}}}).encode()
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker counts")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if len(workers) > len(SECONDARIES):
        parser.error(f"at most {len(SECONDARIES)} worker counts (one fresh region each)")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto takes any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    timer = CallTimer()
    timer.install()
    with moto_server(docker_free_lambda=False) as server:
        url, moto_pid = server.url, server.pid
        primary = RegionClients.create(PRIMARY, endpoint_url=url)
        started = time.monotonic()
        populate(primary, args.things)
        print(f"populated {args.things} things in {time.monotonic() - started:.1f} s")
        print(
            "workers  things/s  errors  elapsed_s  calls/thing  api_ms/thing  ours_ms/thing"
            "  our_cpu_ms/thing  moto_cpu_ms/thing"
        )
        for count, region in zip(workers, SECONDARIES, strict=False):
            secondary = RegionClients.create(region, endpoint_url=url)
            calls0, api0 = timer.snapshot()
            cpu0, moto0 = time.process_time(), cpu_seconds(moto_pid)
            report = region_to_region(primary, secondary, workers=count)
            calls, api = timer.snapshot()
            cpu, moto = time.process_time() - cpu0, cpu_seconds(moto_pid) - moto0
            api -= api0
            things = report.synced + len(report.errors)
            # Each worker is busy the whole run (the pool never starves), so
            # busy time = elapsed x workers; ours is what the calls leave.
            ours = max(0.0, report.elapsed_s * min(count, things) - api)
            print(
                f"{count:7d}  {things / report.elapsed_s:8.1f}  {len(report.errors):6d}"
                f"  {report.elapsed_s:9.1f}  {(calls - calls0) / things:11.1f}"
                f"  {1000 * api / things:12.2f}  {1000 * ours / things:13.3f}"
                f"  {1000 * cpu / things:16.2f}  {1000 * moto / things:17.2f}"
            )
            for name, error in list(report.errors.items())[:5]:
                print(f"  error: {name}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
