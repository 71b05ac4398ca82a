"""Port 443 with AWS IoT's ALPN, and an HTTP proxy, against the testbed.

The region's port 443 refuses any TLS client that does not offer ALPN
`x-amzn-mqtt-ca`, as AWS IoT does; the proxy is Debian's tinyproxy in the
namespace. For the proxy test, iptables refuses the agent's own (root)
connections to the regions' port 443, so only the proxy (user nobody) can
reach them: a connection is proof of the tunnel.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from typing import Any

import pytest

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.gateway_network import serve_port_443, start_http_proxy
from iotdr.testbed.testbed import Testbed as TwoRegions
from iotdr.testbed.tls import client_context

pytestmark = pytest.mark.testbed


def _on_443(testbed: TwoRegions) -> dict[str, Any]:
    """Both regions on 443, named statically (no DNS: it would name 8883)."""
    info = testbed.info
    return {
        "dns": {"name": None},
        "endpoints": {
            "primary": {"host": info.primary.host, "port": 443},
            "secondary": {"host": info.secondary.host, "port": 443},
        },
    }


def _handshake(testbed: TwoRegions, alpn: list[str] | None) -> str | None:
    """A mutual-TLS handshake to the primary's port 443 from inside the
    namespace; the negotiated ALPN, or raises if the gate hung up."""
    info = testbed.info
    context = client_context(info.ca.cert, info.device.cert, info.device.key)
    if alpn:
        context.set_alpn_protocols(alpn)
    region = info.primary
    with (
        testbed.inside(),
        socket.create_connection((region.address, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=region.host) as tls,
    ):
        return tls.selected_alpn_protocol()


def test_port_443_takes_mqtt_only_with_the_aws_iot_alpn(testbed: TwoRegions) -> None:
    serve_port_443(testbed, "primary")
    serve_port_443(testbed, "secondary")
    # The region refuses a client without the ALPN, as AWS IoT does ...
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(testbed, None)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(testbed, ["mqtt"])
    _handshake(testbed, ["x-amzn-mqtt-ca"])  # completes: TLS is end to end with the broker
    # ... and the agent offers it on 443 (awsiotsdk's builder does).
    with AgentRunner(testbed, overrides=_on_443(testbed)) as agent:
        status = agent.wait_connected("region-a")
        assert status["endpoint"].endswith(":443")
        testbed.kill_region("primary")
        assert agent.wait_connected("region-b")["endpoint"].endswith(":443")
    gate_log = (testbed.directory / "logs" / "region-a-alpn-gate.log").read_text()
    assert "ALPN x-amzn-mqtt-ca, spliced" in gate_log


def test_http_proxy_tunnels_the_connection(testbed: TwoRegions) -> None:
    serve_port_443(testbed, "primary")
    serve_port_443(testbed, "secondary")
    proxy = start_http_proxy(testbed)
    # Only the proxy (user nobody) may reach the regions' port 443; the agent
    # (root) may not. (The gates, also root, go on to 8883.)
    for region in (testbed.info.primary, testbed.info.secondary):
        rule = ["-d", region.address, "-p", "tcp", "--dport", "443"]
        rule += ["-m", "owner", "--uid-owner", "0"]
        subprocess.run(
            testbed.netns_argv(["iptables", "-w", "-A", "OUTPUT", *rule, "-j", "REJECT"]),
            check=True,
            timeout=30,
        )
    overrides = _on_443(testbed)
    overrides["connection"] = {"http_proxy": proxy.url}
    overrides["failback"] = {"probe_depth": "tls", "probe_interval_s": 1.0}
    with AgentRunner(testbed, overrides=overrides) as agent:
        agent.wait_connected("region-a")
        testbed.kill_region("primary")
        agent.wait_connected("region-b")
        # Failback probes (TLS, with the ALPN) go through the proxy too.
        testbed.restore_region("primary")
        status = agent.wait_connected("region-a", timeout=60.0)
        assert status["failbacks"] == 1
    tunnels = proxy.log.read_text()
    for region in (testbed.info.primary, testbed.info.secondary):
        assert f"CONNECT {region.host}:443" in tunnels
