"""Mosquitto configurations: the two regions in each of their modes, the local broker.

A region's faults decide its configuration, and a fault that changes it
restarts the region's broker with the new file:
- normal: mutual TLS on the region address, the certificate's CN is the
  MQTT username (AWS IoT identifies things by certificate too);
- tls-bad: the server certificate comes from the rogue CA;
- auth-reject: TLS still completes, but the identity is no longer taken
  from the certificate and anonymous clients are refused, so every CONNECT
  gets CONNACK "not authorized";
- behind the JITR gate: the gate terminates TLS on the region address and
  the broker listens in plain MQTT on an internal port.
"""

import base64
import hashlib
import secrets

from iotdr.testbed.connect_limits import build_plugin, plugin_config
from iotdr.testbed.layout import Layout
from iotdr.testbed.pki import rogue_name
from iotdr.testbed.state import RegionFaults
from iotdr.testbed.topology import (
    GATE_UPSTREAM_PORT,
    LOCAL_ADDRESS,
    LOCAL_PORT,
    REGION_PORT,
    RegionSpec,
)

# Mosquitto drops root privileges to user `mosquitto` by default, which could
# then not read the testbed's keys (mode 0600, owned by root). Queues are
# unbounded: mosquitto's default of 1000 queued messages per client would
# drop messages to an observer that falls behind a burst, and to the agent
# while it applies back-pressure.
_COMMON = """\
user root
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
max_queued_messages 0
max_queued_bytes 0
log_timestamp true
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""
# A user nobody has the password of: the password file must name someone for
# mosquitto to check passwords at all.
_NOBODY = "iotdr-nobody"
# mosquitto's "$7$" format: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt.
_PBKDF2_ITERATIONS = 101


def server_cert_name(region: RegionSpec, faults: RegionFaults) -> str:
    """PKI file stem of the certificate the region presents."""
    return rogue_name(region) if faults.tls_bad else region.name


def _auth(layout: Layout, faults: RegionFaults, *, identity_from_cert: bool) -> str:
    if faults.auth_reject:
        return (
            "use_identity_as_username false\n"
            "allow_anonymous false\n"
            f"password_file {layout.password_file}\n"
        )
    if identity_from_cert:
        return "use_identity_as_username true\nallow_anonymous false\n"
    # Behind the gate the broker no longer sees certificates; the gate has
    # already authenticated the client. With CONNECT limits, TLS still
    # requires a certificate, and the limits plugin decides each CONNECT.
    return "allow_anonymous true\n"


def _region_persistence(layout: Layout, region: RegionSpec) -> str:
    """Sessions and their queues saved every second (and at shutdown), as AWS
    IoT keeps persistent sessions: an observer's subscription outlives a
    region restart, so what the agent publishes into a restored region
    before the observer is back waits in the observer's queue instead of
    vanishing."""
    store = layout.mosquitto / f"{region.name}-store"
    store.mkdir(parents=True, exist_ok=True)
    return f"persistence true\npersistence_location {store}/\nautosave_interval 1\n"


def _limits(layout: Layout, region: RegionSpec, faults: RegionFaults) -> str:
    """The CONNECT quota plugin; mosquitto 2.0 consults it only on listeners
    that do not take the identity from the certificate."""
    if faults.connect_limits is None or faults.auth_reject:
        return ""
    plugin = build_plugin(layout.mosquitto / "plugins")
    return plugin_config(plugin, faults.connect_limits, layout.connect_stats(region.name))


def region_config(layout: Layout, region: RegionSpec, faults: RegionFaults) -> str:
    header = f"# {region.name} ({region.role}), faults: {faults.describe() or 'none'}\n"
    header += _COMMON.replace("persistence false\n", _region_persistence(layout, region))
    limits = _limits(layout, region, faults)
    header += limits
    if faults.jitr_delay_s is not None:
        listener = f"listener {GATE_UPSTREAM_PORT} {region.address}\n"
        return header + listener + _auth(layout, faults, identity_from_cert=False)
    cert_name = server_cert_name(region, faults)
    listener = (
        f"listener {REGION_PORT} {region.address}\n"
        f"cafile {layout.pem('ca')}\n"
        f"certfile {layout.pem(cert_name)}\n"
        f"keyfile {layout.key(cert_name)}\n"
        "require_certificate true\n"
    )
    return header + listener + _auth(layout, faults, identity_from_cert=not limits)


def local_config(layout: Layout) -> str:
    """The gateway's broker. It keeps the agent's persistent session and the
    messages queued for it across restarts (persistence, saved every second
    and at shutdown), and queues without limit while the agent applies
    back-pressure: mosquitto's default max_queued_messages of 1000 would
    drop the rest, which a gateway must not."""
    store = layout.mosquitto / "local-store"
    store.mkdir(parents=True, exist_ok=True)
    return (
        "# local broker for gateway publishers: plain MQTT, anyone may connect\n"
        + _COMMON.replace("persistence false\n", "")
        + "persistence true\n"
        + f"persistence_location {store}/\n"
        + "autosave_interval 1\n"
        # The agent acknowledges a message once it is on disk (an fsync per
        # batch); mosquitto's default of 20 unacknowledged messages per
        # client would cap a gateway at 20 messages per fsync.
        + "max_inflight_messages 1000\n"
        + f"listener {LOCAL_PORT} {LOCAL_ADDRESS}\nallow_anonymous true\n"
    )


def write_password_file(layout: Layout) -> None:
    salt = secrets.token_bytes(12)
    password = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha512", password, salt, _PBKDF2_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    encoded_digest = base64.b64encode(digest).decode()
    layout.password_file.write_text(
        f"{_NOBODY}:$7${_PBKDF2_ITERATIONS}${encoded_salt}${encoded_digest}\n"
    )
