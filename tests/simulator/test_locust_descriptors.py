"""A Locust worker's devices keep working with socket descriptors above
FD_SETSIZE (1024), as a worker with a few hundred devices has them.

paho's own `loop()` calls `select()`; under gevent that first polls with
the real select(2), which refuses any descriptor >= 1024, and paho reports
the refusal as a lost connection. This runs a worker's slice of the fleet
(the real `WorkerFleet` and paho driver, under gevent's patching, in the
testbed's namespace) with descriptors 0-1099 already taken, so every device
socket is above the limit, against the testbed's mosquitto.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iotdr.simulator import real_run
from iotdr.simulator.run import certificates_dir, fleet_tls_environment
from iotdr.simulator.scenario import load_scenario
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.testbed import Testbed

pytestmark = pytest.mark.testbed

SCENARIO = """
name: high-descriptors
duration_s: 3
drain_s: 3
fleet:
  devices: 6
  connect_rate_per_s: 50
  settle_s: 0
  publish_interval_s: 1
"""

WORKER = """
from gevent import monkey

monkey.patch_all()

import json, os, resource, sys, time
from pathlib import Path

from iotdr.simulator.scenario import load_scenario
from iotdr.simulator.worker_fleet import WorkerFleet

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, max(4096, hard)))
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
scenario = load_scenario(Path(sys.argv[1]))
shard = (0, scenario.fleet.devices)
fleet = WorkerFleet(scenario, json.loads(sys.argv[2]), Path(sys.argv[3]), shard)
connected = fleet.ramp_up(time.time())
records = fleet.run(time.time())
print(json.dumps({
    "connected": connected,
    "lowest_fd": min(held),
    "devices": [
        {"connections": len(r.connections), "produced": r.produced, "acknowledged": r.acknowledged}
        for r in records
    ],
}))
"""


def test_devices_connect_and_publish_with_sockets_above_fd_setsize(tmp_path: Path) -> None:
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(SCENARIO)
    scenario = load_scenario(scenario_path)
    testbed = Testbed.up(tmp_path / "testbed")
    try:
        certificates = certificates_dir(testbed)
        issue_client_certificates(testbed.layout, scenario.fleet.client_ids(), certificates)
        base = real_run.testbed_target(testbed, certificates).base_config
        argv = [
            sys.executable, "-c", WORKER,
            str(scenario_path), json.dumps(dict(base)), str(certificates),
        ]  # fmt: skip
        done = subprocess.run(
            testbed.netns_argv(argv),
            env=fleet_tls_environment(certificates),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        testbed.down()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["lowest_fd"] < 1024  # the held descriptors fill the low numbers
    assert result["connected"] == scenario.fleet.devices
    for device in result["devices"]:
        assert device["connections"] == 1  # connected once, never dropped
        assert device["produced"] >= 2
        assert device["acknowledged"] == device["produced"]  # every PUBACK came back
