"""Knot DNS, the testbed's authoritative server, run in the foreground.

Knot keeps everything (rundir, control socket, databases, zone file) in the
testbed directory. The zone file is rewritten after every dynamic update
(`zonefile-sync: 0`), so it always holds the current records: a restart
(`refused` healed) or a reload (`servfail` healed) brings back exactly what
was served before.
"""

from iotdr.testbed import dns_client, processes
from iotdr.testbed.dns_records import DnsRecords, TsigKey, zone_text
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.layout import Layout
from iotdr.testbed.runtime import Runtime
from iotdr.testbed.topology import DNS_ADDRESS, DNS_ADMIN_SOURCE, DNS_PORT, ZONE

# Unix socket paths are limited to 108 bytes (sun_path).
_MAX_SOCKET_PATH = 107
_LOG_NAME = "knot"


def _config(layout: Layout, tsig: TsigKey) -> str:
    return f"""\
# Written by `iotdr testbed up`; Knot runs in the foreground under the testbed.
server:
    rundir: "{layout.knot}"
    listen: {DNS_ADDRESS}@{DNS_PORT}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

control:
    listen: "{layout.knot_socket}"

database:
    storage: "{layout.knot_storage}"
    # LMDB maps this much address space; the defaults are many gigabytes.
    journal-db-max-size: 16M
    kasp-db-max-size: 16M
    timer-db-max-size: 16M
    catalog-db-max-size: 16M

log:
  - target: stderr
    any: info

key:
  - id: {tsig.name}
    algorithm: {tsig.algorithm}
    secret: {tsig.secret}

acl:
  - id: testbed-update
    address: [{DNS_ADDRESS}, {DNS_ADMIN_SOURCE}]
    key: {tsig.name}
    action: update

template:
  - id: default
    storage: "{layout.knot_zones}"
    file: "%s.zone"
    zonefile-sync: 0
    journal-content: none

zone:
  - domain: {ZONE}
    acl: testbed-update
"""


def write_files(layout: Layout, tsig: TsigKey, records: DnsRecords) -> None:
    """Writes knot.conf, the initial zone file and a knsupdate key file."""
    if len(str(layout.knot_socket).encode()) > _MAX_SOCKET_PATH:
        raise TestbedError(
            f"testbed directory path too long for Knot's control socket "
            f"{layout.knot_socket}: use a shorter --dir"
        )
    for directory in (layout.knot, layout.knot_zones, layout.knot_storage):
        directory.mkdir(parents=True, exist_ok=True)
    layout.knot_conf.write_text(_config(layout, tsig))
    (layout.knot_zones / f"{ZONE}.zone").write_text(zone_text(records))
    layout.tsig_key_file.touch(mode=0o600)
    layout.tsig_key_file.write_text(f"{tsig.algorithm}:{tsig.name}:{tsig.secret}\n")


def start(rt: Runtime) -> int:
    """Starts knotd in the namespace and waits until it serves the zone."""
    log_path = rt.layout.log(_LOG_NAME)
    pid = processes.spawn_daemon(
        rt.exec_argv([rt.tools.knotd, "-c", str(rt.layout.knot_conf)]), log_path
    )
    processes.wait_until(
        lambda: dns_client.zone_is_served(rt.netns), pid=pid, what="knotd", log_path=log_path
    )
    return pid


def _knotc(rt: Runtime, *args: str) -> None:
    argv = [rt.tools.knotc, "-s", str(rt.layout.knot_socket), *args]
    processes.run(argv, f"knotc {' '.join(args)}")


def expire_zone(rt: Runtime) -> None:
    """Drops the zone's contents from memory (file kept): Knot answers SERVFAIL."""
    _knotc(rt, "--force", "zone-purge", ZONE, "+expire")


def reload_zone(rt: Runtime, knot_pid: int) -> None:
    """Loads the zone from its file again and waits until it is served.

    `zone-reload` refuses an expired zone; a server reload loads it.
    """
    _knotc(rt, "reload")
    processes.wait_until(
        lambda: dns_client.zone_is_served(rt.netns),
        pid=knot_pid,
        what="knotd (zone reload)",
        log_path=rt.layout.log(_LOG_NAME),
    )
