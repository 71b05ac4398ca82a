"""The MQTT health checker against a real region of the testbed (mosquitto, mutual TLS)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from iotdr.cloud.health import (
    SECRET_HEADER,
    HealthCheckConfig,
    HealthResult,
    check_broker,
    handle_http,
)
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


def _check_over_http(tb: TwoRegions, secret: str) -> dict[str, object]:
    with inside(tb.info.netns):
        return handle_http(
            {SECRET_HEADER.title(): secret},
            secret="s3cret",
            check=functools.partial(check_broker, _config(tb)),
        )


@pytest.mark.testbed
def test_healthy_then_unhealthy_when_the_region_dies_twice_in_one_process(tmp_path: Path) -> None:
    for attempt in range(2):  # a second round in the same process: nothing carries over
        with TwoRegions.up(tmp_path / f"tb{attempt}") as tb:
            healthy = _check_over_http(tb, "s3cret")
            assert healthy["statusCode"] == 200, healthy
            assert "5/5" in str(healthy["body"])
            again = _check_over_http(tb, "s3cret")
            assert again["statusCode"] == 200, again

            tb.kill_region("primary")
            unhealthy = _check_over_http(tb, "s3cret")
            assert unhealthy["statusCode"] == 503, unhealthy


def test_a_wrong_or_missing_secret_is_refused_without_checking() -> None:
    def never() -> HealthResult:
        raise AssertionError("the broker must not be checked")

    for headers in ({}, {SECRET_HEADER: "guess"}, {SECRET_HEADER: ""}):
        assert handle_http(headers, secret="s3cret", check=never)["statusCode"] == 403
    # An unset secret refuses everyone rather than letting everyone in.
    assert handle_http({SECRET_HEADER: ""}, secret="", check=never)["statusCode"] == 403
