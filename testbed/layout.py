"""Where a testbed keeps its files inside its directory.

One place names every path, so the modules that write a file and the ones
that read it (and `down`, and users reading logs) agree.
"""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Layout:
    directory: Path  # absolute

    @classmethod
    def at(cls, directory: Path) -> "Layout":
        return cls(directory=directory.resolve())

    # The contract (testbed.json) and our own bookkeeping (state.json).
    @property
    def testbed_json(self) -> Path:
        return self.directory / "testbed.json"

    @property
    def state_json(self) -> Path:
        return self.directory / "state.json"

    @property
    def lock(self) -> Path:
        return self.directory / ".lock"

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    def pem(self, name: str) -> Path:
        return self.pki / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def mosquitto(self) -> Path:
        return self.directory / "mosquitto"

    def mosquitto_conf(self, name: str) -> Path:
        return self.mosquitto / f"{name}.conf"

    @property
    def password_file(self) -> Path:
        return self.mosquitto / "passwords"

    def connect_stats(self, region_name: str) -> Path:
        """Per-second CONNECT counts of a region with limits (connect_limits.c)."""
        return self.mosquitto / f"{region_name}-connects.txt"

    def jitr_registry(self, region_name: str) -> Path:
        return self.mosquitto / f"{region_name}-jitr-registry.json"

    @property
    def knot(self) -> Path:
        return self.directory / "knot"

    @property
    def knot_conf(self) -> Path:
        return self.knot / "knot.conf"

    @property
    def knot_socket(self) -> Path:
        return self.knot / "knot.sock"

    @property
    def knot_zones(self) -> Path:
        return self.knot / "zones"

    @property
    def knot_storage(self) -> Path:
        return self.knot / "storage"

    @property
    def tsig_key_file(self) -> Path:
        # knsupdate's `-k` format, for people who want to poke the zone by hand.
        return self.knot / "tsig.key"

    @property
    def agent_config(self) -> Path:
        return self.directory / "agent.yaml"

    @property
    def agent_socket(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def agent_state(self) -> Path:
        return self.directory / "state"
