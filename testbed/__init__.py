"""Two-region local testbed: real brokers, real DNS, fault injection.

See DESIGN.md, "The two-region testbed". Typical use:

    from iotdr.testbed import Observer, Testbed

    with Testbed.up(directory) as tb, Observer(tb.info, "secondary", ["iotdr/#"]) as obs:
        tb.kill_region("primary")
        obs.wait_for_message(topic="iotdr/iotdr-device-1/heartbeat", timeout=10)
"""

from iotdr.testbed.contract import (
    CertificateFiles,
    ClientIdentity,
    DnsInfo,
    LocalBrokerInfo,
    RegionInfo,
    TestbedInfo,
)
from iotdr.testbed.errors import PrerequisiteError, TestbedError
from iotdr.testbed.netns import inside
from iotdr.testbed.observer import ObservedMessage, Observer
from iotdr.testbed.state import DnsFailMode
from iotdr.testbed.status import TestbedStatus
from iotdr.testbed.testbed import Testbed
from iotdr.testbed.tls import client_context
from iotdr.testbed.topology import REGIONS, RegionSpec, Role

__all__ = [
    "REGIONS",
    "CertificateFiles",
    "ClientIdentity",
    "DnsFailMode",
    "DnsInfo",
    "LocalBrokerInfo",
    "ObservedMessage",
    "Observer",
    "PrerequisiteError",
    "RegionInfo",
    "RegionSpec",
    "Role",
    "Testbed",
    "TestbedError",
    "TestbedInfo",
    "TestbedStatus",
    "client_context",
    "inside",
]
