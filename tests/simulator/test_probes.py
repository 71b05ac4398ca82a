"""The real runner's failback probes against a testbed's regions: a TLS
probe (done in a thread) answers healthy from a live region and tells a
killed region (refused), a blackholed one (timeout) and a certificate the
region does not trust (TLS) apart, as the asyncio probe did."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotdr.testbed import Testbed

pytestmark = pytest.mark.testbed

# Runs inside the testbed's namespace, where the region names resolve.
_PROBE = """
import asyncio, json, sys
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.settings import TlsSettings
from iotdr.simulator.probes import ProbeError, Prober, tls_probe_context

host, ca, cert, key, depth = sys.argv[1:6]
context = None if depth == "tcp" else tls_probe_context(
    TlsSettings(ca_file=ca, cert_file=cert, key_file=key)
)

async def main() -> str:
    prober = Prober()
    try:
        await prober.probe(Endpoint(host=host, port=8883), context, 1.5)
        return "healthy"
    except ProbeError as exc:
        return exc.kind.value
    finally:
        prober.close()

print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed.up(tmp_path_factory.mktemp("probes") / "tb") as testbed:
        yield testbed


def _probe(testbed: Testbed, role: str, *, ca: Path | None = None, depth: str = "tls") -> str:
    info = testbed.info
    region = info.region("primary" if role == "primary" else "secondary")
    argv = [
        sys.executable, "-c", _PROBE, region.host,
        str(ca or info.ca.cert), str(info.device.cert), str(info.device.key), depth,
    ]  # fmt: skip
    done = subprocess.run(
        testbed.netns_argv(argv), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: str = json.loads(done.stdout)
    return result


def test_a_live_region_answers_tls_and_tcp_probes(testbed: Testbed) -> None:
    assert _probe(testbed, "primary") == "healthy"
    assert _probe(testbed, "secondary", depth="tcp") == "healthy"


def test_a_killed_region_refuses_and_a_blackholed_one_times_out(testbed: Testbed) -> None:
    testbed.kill_region("primary")
    try:
        assert _probe(testbed, "primary") == "refused"
    finally:
        testbed.restore_region("primary")
    testbed.blackhole("secondary")
    try:
        assert _probe(testbed, "secondary") == "timeout"
    finally:
        testbed.heal("secondary")
    assert _probe(testbed, "primary") == "healthy"


def test_a_region_the_device_cannot_verify_fails_as_tls(testbed: Testbed, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(testbed.info.device.cert.read_text())  # not the region's issuer
    assert _probe(testbed, "primary", ca=other_ca) == "tls"
