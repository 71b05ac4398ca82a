"""testbed.json: the stable contract between a testbed and everything using it.

`TestbedInfo` is a typed, frozen view of the file; its JSON shape is fixed
(see DESIGN.md, "The two-region testbed"), so any change here is a breaking
change for the agent's tests, the demo, the benchmarks and the simulator.
All addresses are as seen from inside `netns`. A region's `pid` is the
process serving its address and port, 0 while the region is killed.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from iotdr.testbed.errors import TestbedError
from iotdr.testbed.jsonfile import read_json, write_json
from iotdr.testbed.topology import Role


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionInfo:
    name: str
    host: str
    address: str
    port: int
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalBrokerInfo:
    host: str
    port: int
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsInfo:
    server: str
    port: int
    zone: str
    cname: str
    txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIdentity:
    client_id: str
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class TestbedInfo:
    __test__ = False  # not a test class, though pytest collects names starting with "Test"

    netns: str
    ca: CertificateFiles
    primary: RegionInfo
    secondary: RegionInfo
    local: LocalBrokerInfo
    dns: DnsInfo
    device: ClientIdentity
    observer: ClientIdentity
    agent_config: Path

    def region(self, role: Role) -> RegionInfo:
        return self.primary if role == "primary" else self.secondary

    def with_region_pid(self, role: Role, pid: int) -> "TestbedInfo":
        if role == "primary":
            return replace(self, primary=replace(self.primary, pid=pid))
        return replace(self, secondary=replace(self.secondary, pid=pid))

    def to_json(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "ca": {"cert": str(self.ca.cert), "key": str(self.ca.key)},
            "regions": {
                "primary": _region_json(self.primary),
                "secondary": _region_json(self.secondary),
            },
            "local": {"host": self.local.host, "port": self.local.port, "pid": self.local.pid},
            "dns": {
                "server": self.dns.server,
                "port": self.dns.port,
                "zone": self.dns.zone,
                "cname": self.dns.cname,
                "txt": self.dns.txt,
            },
            "device": _identity_json(self.device),
            "observer": _identity_json(self.observer),
            "agent_config": str(self.agent_config),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TestbedInfo":
        try:
            regions = data["regions"]
            return cls(
                netns=str(data["netns"]),
                ca=CertificateFiles(cert=Path(data["ca"]["cert"]), key=Path(data["ca"]["key"])),
                primary=_region_from_json(regions["primary"]),
                secondary=_region_from_json(regions["secondary"]),
                local=LocalBrokerInfo(
                    host=str(data["local"]["host"]),
                    port=int(data["local"]["port"]),
                    pid=int(data["local"]["pid"]),
                ),
                dns=DnsInfo(
                    server=str(data["dns"]["server"]),
                    port=int(data["dns"]["port"]),
                    zone=str(data["dns"]["zone"]),
                    cname=str(data["dns"]["cname"]),
                    txt=str(data["dns"]["txt"]),
                ),
                device=_identity_from_json(data["device"]),
                observer=_identity_from_json(data["observer"]),
                agent_config=Path(data["agent_config"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TestbedError(f"testbed.json is malformed: {exc!r}") from exc


def _region_json(region: RegionInfo) -> dict[str, Any]:
    return {
        "name": region.name,
        "host": region.host,
        "address": region.address,
        "port": region.port,
        "pid": region.pid,
    }


def _region_from_json(data: dict[str, Any]) -> RegionInfo:
    return RegionInfo(
        name=str(data["name"]),
        host=str(data["host"]),
        address=str(data["address"]),
        port=int(data["port"]),
        pid=int(data["pid"]),
    )


def _identity_json(identity: ClientIdentity) -> dict[str, Any]:
    return {"client_id": identity.client_id, "cert": str(identity.cert), "key": str(identity.key)}


def _identity_from_json(data: dict[str, Any]) -> ClientIdentity:
    return ClientIdentity(
        client_id=str(data["client_id"]), cert=Path(data["cert"]), key=Path(data["key"])
    )


def load_info(path: Path) -> TestbedInfo:
    return TestbedInfo.from_json(read_json(path))


def save_info(path: Path, info: TestbedInfo) -> None:
    write_json(path, info.to_json())
