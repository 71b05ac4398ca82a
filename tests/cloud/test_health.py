"""The MQTT health checker against a real region of the testbed (mosquitto, mutual TLS)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from iotdr.cloud.health import HealthCheckConfig, HealthResult, check_broker
from iotdr.testbed.netns import inside
from iotdr.testbed.testbed import Testbed as TwoRegions
from iotdr.testbed.tls import client_context


def _config(tb: TwoRegions) -> HealthCheckConfig:
    info = tb.info
    return HealthCheckConfig(
        host=info.primary.address,
        port=info.primary.port,
        tls_context=functools.partial(
            client_context,
            info.ca.cert,
            info.observer.cert,
            info.observer.key,
            server_hostname=info.primary.host,
        ),
        message_count=5,
        timeout_s=5.0,
    )


def _check(tb: TwoRegions) -> HealthResult:
    with inside(tb.info.netns):
        return check_broker(_config(tb))


@pytest.mark.testbed
def test_healthy_then_unhealthy_when_the_region_dies_twice_in_one_process(tmp_path: Path) -> None:
    for attempt in range(2):  # a second round in the same process: nothing carries over
        with TwoRegions.up(tmp_path / f"tb{attempt}") as tb:
            healthy = _check(tb)
            assert healthy.healthy and (healthy.received, healthy.expected) == (5, 5), healthy
            again = _check(tb)
            assert again.healthy, again

            tb.kill_region("primary")
            unhealthy = _check(tb)
            assert not unhealthy.healthy, unhealthy
