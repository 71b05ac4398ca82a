"""The retry runner never runs twice at once, and the health check never late.

Lambda's side is configuration (reserved concurrency 1, no asynchronous
retries), checked in the template; the runner's own lease is checked by
starting a second run while a first one is in the middle of its work.
"""

from __future__ import annotations

import threading
from typing import Any

from iotdr.cloud.retry_runner import LEASE_S, RetryReport, run_retries
from tests.cloud import aws_events as ev
from tests.cloud.regions import PRIMARY, SECONDARY, TABLES, MotoRegions
from tests.cloud.template_reader import resources_of


def _one_failure(regions: MotoRegions) -> None:
    regions.publish(PRIMARY, ev.thing_group("g", "CREATED"))
    regions.publish(PRIMARY, ev.membership("g", "late-thing", "ADDED"))
    assert regions.replicate(SECONDARY).failed == 1
    regions.clients[PRIMARY].iot.create_thing(thingName="late-thing")
    regions.clients[SECONDARY].iot.create_thing(thingName="late-thing")


def test_a_second_run_during_the_first_does_nothing(regions: MotoRegions) -> None:
    _one_failure(regions)
    dynamodb = regions.clients[SECONDARY].dynamodb
    inside, release = threading.Event(), threading.Event()

    def hold(**_: Any) -> None:  # the first run, paused inside its apply
        inside.set()
        release.wait(timeout=60)

    regions.clients[SECONDARY].iot.meta.events.register(
        "before-call.iot.AddThingToThingGroup", hold
    )
    first: list[RetryReport] = []
    thread = threading.Thread(
        target=lambda: first.append(
            run_retries(regions.worker(SECONDARY), dynamodb=dynamodb, error_table=TABLES.errors)
        )
    )
    thread.start()
    try:
        assert inside.wait(timeout=60)
        second = run_retries(
            regions.worker(SECONDARY), dynamodb=dynamodb, error_table=TABLES.errors
        )
    finally:
        release.set()
        thread.join(timeout=60)
    assert second.already_running and (second.resolved, second.still_failing) == (0, 0)
    assert first[0].resolved == 1 and not first[0].already_running
    # The lease went with the first run: the next one runs.
    assert not run_retries(
        regions.worker(SECONDARY), dynamodb=dynamodb, error_table=TABLES.errors
    ).already_running


def test_a_crashed_runs_lease_lapses(regions: MotoRegions) -> None:
    dynamodb = regions.clients[SECONDARY].dynamodb
    dynamodb.put_item(  # left by a run that timed out at t=1000
        TableName=TABLES.errors,
        Item={
            "pk": {"S": "control#retry-runner-lease"},
            "owner": {"S": "dead"},
            "until": {"N": str(1000 + LEASE_S)},
        },
    )
    worker = regions.worker(SECONDARY)
    early = run_retries(worker, dynamodb=dynamodb, error_table=TABLES.errors, now_s=1500)
    late = run_retries(worker, dynamodb=dynamodb, error_table=TABLES.errors, now_s=2000 + LEASE_S)
    assert early.already_running and not late.already_running


def test_lambda_never_runs_the_retry_runner_twice_nor_the_health_check_late() -> None:
    functions = resources_of("region.yaml", "AWS::Lambda::Function")
    assert functions["RetryFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in resources_of("region.yaml", "AWS::Lambda::EventInvokeConfig").values()
    }
    assert configs["RetryFunction"]["MaximumRetryAttempts"] == 0
    assert configs["HealthFunction"]["MaximumRetryAttempts"] == 0
    assert configs["HealthFunction"]["MaximumEventAgeInSeconds"] <= 60  # its schedule's period
