"""An operator's MQTT client in a region: publishes commands to devices the
way a cloud application would, with the observer's certificate."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from iotdr.testbed.contract import TestbedInfo
from iotdr.testbed.netns import inside
from iotdr.testbed.tls import client_context
from iotdr.testbed.topology import resolve_role


def region_client(info: TestbedInfo, region: str, client_id: str = "operator") -> mqtt.Client:
    """A connected MQTT 5 client in `region` (primary|secondary or its
    name), its network thread running inside the testbed's namespace;
    call loop_stop() and disconnect() when done."""
    where = info.region(resolve_role(region))
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.tls_set_context(
        client_context(
            info.ca.cert, info.observer.cert, info.observer.key, server_hostname=where.host
        )
    )
    with inside(info.netns):
        client.connect(where.address, where.port)
        client.loop_start()
    return client
