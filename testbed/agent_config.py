"""DIR/agent.yaml: a ready agent configuration for one testbed.

The keys are the agent's configuration schema; paths are absolute so the
agent can be started from any working directory (inside the namespace).
"""

from typing import Any

import yaml

from iotdr.testbed.layout import Layout
from iotdr.testbed.topology import (
    CNAME_NAME,
    DEVICE_CLIENT_ID,
    ENDPOINT_ALLOWLIST,
    HEARTBEAT_TOPIC,
    REGION_PORT,
    REGIONS,
)


def agent_config(layout: Layout) -> dict[str, Any]:
    return {
        "client_id": DEVICE_CLIENT_ID,
        "tls": {
            "ca_file": str(layout.pem("ca")),
            "cert_file": str(layout.pem("device")),
            "key_file": str(layout.key("device")),
        },
        "endpoints": {
            role: {"host": region.host, "port": REGION_PORT} for role, region in REGIONS.items()
        },
        "dns": {"name": CNAME_NAME, "allowlist": [ENDPOINT_ALLOWLIST]},
        "heartbeat": {"topic": HEARTBEAT_TOPIC, "interval_s": 1.0},
        "control_socket": str(layout.agent_socket),
        "state_dir": str(layout.agent_state),
    }


def write_agent_config(layout: Layout) -> None:
    layout.agent_config.write_text(
        "# Agent configuration for this testbed; run the agent inside its namespace.\n"
        + yaml.safe_dump(agent_config(layout), sort_keys=False)
    )
