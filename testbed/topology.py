"""The fixed shape of every testbed: regions, addresses, ports and DNS names.

Everything here is as seen from inside the testbed's network namespace, where
all of 127.0.0.0/8 is local, so each region gets its own loopback address and
can use the production port. Host names mimic AWS IoT endpoints
(`<id>-ats.iot.<region>.<zone>`) so that the region is the third label, as in
production.
"""

from dataclasses import dataclass
from typing import Literal, get_args

from iotdr.testbed.errors import TestbedError

Role = Literal["primary", "secondary"]
ROLES: tuple[Role, ...] = get_args(Role)

ZONE = "iotdr.test"
ENDPOINT_PREFIX = "a1b2c3d4e5f6g7-ats.iot"
CNAME_NAME = f"iot.{ZONE}"
TXT_NAME = f"_iot.{ZONE}"
# Agents accept only CNAME targets that look like the region endpoints.
ENDPOINT_ALLOWLIST = f"*-ats.iot.*.{ZONE}"

REGION_PORT = 8883  # MQTT over TLS, as AWS IoT Core
# In JITR mode the gate owns REGION_PORT and the region's broker moves here.
GATE_UPSTREAM_PORT = 18883

LOCAL_ADDRESS = "127.0.0.1"
LOCAL_PORT = 1883
# glibc's getaddrinfo with AI_ADDRCONFIG (getent ahosts, curl and many
# libraries ask for it) returns IPv4 answers only if some IPv4 address other
# than 127.0.0.1 is configured; a loopback-only namespace would fail those
# lookups, so this otherwise unused address is configured on lo.
ADDRCONFIG_ADDRESS = "127.0.0.100"
DNS_ADDRESS = "127.0.0.1"
DNS_PORT = 53
# The testbed sends its own DNS updates and readiness queries from this
# address, so a `dns-fail timeout` (which drops everyone else's DNS packets)
# does not lock the testbed out of its own server.
DNS_ADMIN_SOURCE = "127.0.0.53"
TSIG_KEY_NAME = "iotdr-testbed"

DEVICE_CLIENT_ID = "iotdr-device-1"
OBSERVER_CLIENT_ID = "iotdr-observer"
HEARTBEAT_TOPIC = f"iotdr/{DEVICE_CLIENT_ID}/heartbeat"
TXT_DEFAULT = '{"primary": "region-a", "secondary": "region-b"}'


@dataclass(frozen=True, slots=True)
class RegionSpec:
    role: Role
    name: str
    address: str

    @property
    def host(self) -> str:
        return f"{ENDPOINT_PREFIX}.{self.name}.{ZONE}"


REGIONS: dict[Role, RegionSpec] = {
    "primary": RegionSpec(role="primary", name="region-a", address="127.0.0.2"),
    "secondary": RegionSpec(role="secondary", name="region-b", address="127.0.0.3"),
}


def resolve_role(name: str) -> Role:
    """Accepts a role (`primary`) or a region name (`region-a`)."""
    for spec in REGIONS.values():
        if name in (spec.role, spec.name):
            return spec.role
    known = ", ".join(f"{s.role}|{s.name}" for s in REGIONS.values())
    raise TestbedError(f"unknown region {name!r} (expected one of {known})")
