"""The daemon's optional metrics port (`metrics.listen`), asked from inside
the testbed's namespace as a Prometheus server on the gateway would."""

from __future__ import annotations

import http.client
import socket

import pytest

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.testbed import Testbed as TwoRegions

pytestmark = pytest.mark.testbed


def scrape(testbed: TwoRegions, port: int) -> tuple[int, str, str]:
    with testbed.inside():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        connection.request("GET", "/metrics")
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read().decode()


def test_the_daemon_serves_its_metrics(testbed: TwoRegions) -> None:
    with AgentRunner(testbed, overrides={"metrics": {"listen": "127.0.0.1:9101"}}) as agent:
        agent.wait_connected("region-a")
        status, content_type, body = scrape(testbed, 9101)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    lines = body.splitlines()
    assert "iotdr_agent_up 1" in lines and "iotdr_agent_connected 1" in lines
    info = [line for line in lines if line.startswith("iotdr_agent_info{")]
    assert len(info) == 1 and 'region="region-a"' in info[0]


def test_a_port_in_use_leaves_the_agent_running(testbed: TwoRegions) -> None:
    with testbed.inside(), socket.socket() as taken:
        taken.bind(("127.0.0.1", 9102))
        taken.listen()
        with AgentRunner(testbed, overrides={"metrics": {"listen": "127.0.0.1:9102"}}) as agent:
            assert agent.wait_connected("region-a")["connected"]
            assert "metrics.listen 127.0.0.1:9102: cannot serve" in agent.log_text()
