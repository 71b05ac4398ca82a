"""Publishes one message to a region by host name, through the system resolver.

Run inside a testbed's namespace (`ip netns exec`): the host name resolves
through glibc and the namespace's resolv.conf, exactly as on a device, and
TLS checks that name. Exits 0 once the broker acknowledged the message.

    publish_by_name.py HOST PORT CA CERT KEY CLIENT_ID TOPIC PAYLOAD
"""

import ssl
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def main(argv: list[str]) -> int:
    host, port, ca, cert, key, client_id, topic, payload = argv
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    client.tls_set_context(context)
    client.connect(host, int(port), keepalive=5)
    client.loop_start()
    try:
        message = client.publish(topic, payload.encode(), qos=1)
        message.wait_for_publish(timeout=10)
        return 0 if message.is_published() else 1
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
