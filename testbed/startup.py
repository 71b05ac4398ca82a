"""Bringing a testbed up inside its fresh namespace, in dependency order.

PKI first (everything presents or checks certificates), then DNS (names
must resolve before anyone connects), then the brokers, and the contract
files last, so a testbed.json on disk always describes running processes.
"""

import shutil

from iotdr.testbed import knot, regions
from iotdr.testbed.agent_config import write_agent_config
from iotdr.testbed.connect_limits import ConnectLimits
from iotdr.testbed.contract import (
    CertificateFiles,
    ClientIdentity,
    DnsInfo,
    LocalBrokerInfo,
    RegionInfo,
    TestbedInfo,
    save_info,
)
from iotdr.testbed.dns_records import DnsRecords, TsigKey
from iotdr.testbed.mosquitto import write_password_file
from iotdr.testbed.pki import create_pki
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.state import RegionFaults, TestbedState, save_state
from iotdr.testbed.topology import (
    CNAME_NAME,
    DEVICE_CLIENT_ID,
    DNS_ADDRESS,
    DNS_PORT,
    LOCAL_ADDRESS,
    LOCAL_PORT,
    OBSERVER_CLIENT_ID,
    REGION_PORT,
    REGIONS,
    TXT_DEFAULT,
    TXT_NAME,
    ZONE,
    Role,
)


def start_everything(
    rt: Runtime, *, cname_ttl: int, connect_limits: ConnectLimits | None = None
) -> None:
    """Starts Knot and the brokers, then writes testbed.json and state.json."""
    layout = rt.layout
    # Leftovers of an earlier testbed in the same directory (Knot's databases
    # above all) must not leak into this one.
    for stale in (layout.pki, layout.logs, layout.mosquitto, layout.knot):
        shutil.rmtree(stale, ignore_errors=True)
    for directory in (layout.logs, layout.mosquitto, layout.agent_state):
        directory.mkdir(parents=True, exist_ok=True)
    create_pki(layout)
    write_password_file(layout)
    tsig = TsigKey.generate()
    records = DnsRecords(
        cname_target=REGIONS["primary"].host,
        cname_ttl=cname_ttl,
        txt=TXT_DEFAULT,
        txt_ttl=cname_ttl,
    )
    knot.write_files(layout, tsig, records)
    knot_pid = knot.start(rt)
    local_pid = regions.start_local(rt)
    started = {
        role: regions.start_region(rt, spec, RegionFaults(connect_limits=connect_limits))
        for role, spec in REGIONS.items()
    }
    write_agent_config(layout)
    state = TestbedState(
        netns_inode=rt.netns_inode,
        knot_pid=knot_pid,
        tsig=tsig,
        records=records,
        dns_fault=None,
        regions=started,
    )
    save_state(layout.state_json, state)
    save_info(layout.testbed_json, _info(rt, state, local_pid))


def _info(rt: Runtime, state: TestbedState, local_pid: int) -> TestbedInfo:
    layout = rt.layout

    def region(role: Role) -> RegionInfo:
        spec = REGIONS[role]
        pid = state.regions[role].serving_pid
        return RegionInfo(
            name=spec.name, host=spec.host, address=spec.address, port=REGION_PORT, pid=pid
        )

    def identity(client_id: str, name: str) -> ClientIdentity:
        return ClientIdentity(client_id=client_id, cert=layout.pem(name), key=layout.key(name))

    return TestbedInfo(
        netns=rt.netns,
        ca=CertificateFiles(cert=layout.pem("ca"), key=layout.key("ca")),
        primary=region("primary"),
        secondary=region("secondary"),
        local=LocalBrokerInfo(host=LOCAL_ADDRESS, port=LOCAL_PORT, pid=local_pid),
        dns=DnsInfo(server=DNS_ADDRESS, port=DNS_PORT, zone=ZONE, cname=CNAME_NAME, txt=TXT_NAME),
        device=identity(DEVICE_CLIENT_ID, "device"),
        observer=identity(OBSERVER_CLIENT_ID, "observer"),
        agent_config=layout.agent_config,
    )
