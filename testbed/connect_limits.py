"""AWS IoT Core's CONNECT quotas in a testbed region (see connect_limits.c).

A region with limits loads a small mosquitto plugin, compiled from
`connect_limits.c` when a testbed first needs it, that refuses CONNECTs
beyond an account-wide rate (AWS IoT's default: 500 CONNECT/s per account
and region, adjustable) and a second CONNECT of one client id within a
second (AWS IoT: 1 CONNECT/s per client id, not adjustable). It appends one
line per second to a stats file, which `read_stats` turns into counts.
"""

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from iotdr.testbed.errors import PrerequisiteError, TestbedError

AWS_DEFAULT_ACCOUNT_CONNECTS_PER_S = 500.0
AWS_CLIENT_CONNECT_INTERVAL_S = 1.0
REFUSE_MODES = ("close", "not-authorized")
_SOURCE = "connect_limits.c"
_HEADERS_HINT = "apt-get install gcc libmosquitto-dev mosquitto-dev (or ./scripts/install-deps)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectLimits:
    """One region's CONNECT quotas; None/0 switches a rule off."""

    account_connects_per_s: float | None = AWS_DEFAULT_ACCOUNT_CONNECTS_PER_S
    client_connect_interval_s: float = AWS_CLIENT_CONNECT_INTERVAL_S
    refuse: str = "close"

    def __post_init__(self) -> None:
        rate = self.account_connects_per_s
        if rate is not None and not 0 < rate < 1e7:
            raise TestbedError(f"account CONNECT rate must be positive, got {rate}")
        if not 0 <= self.client_connect_interval_s <= 3600:
            raise TestbedError("client CONNECT interval must be 0..3600 s")
        if self.refuse not in REFUSE_MODES:
            raise TestbedError(f"refuse must be one of {', '.join(REFUSE_MODES)}")

    def describe(self) -> str:
        rate = (
            "unlimited"
            if self.account_connects_per_s is None
            else (f"{self.account_connects_per_s:g}/s")
        )
        return f"limits(account {rate}, client id {self.client_connect_interval_s:g} s)"

    def to_json(self) -> dict[str, object]:
        return {
            "account_connects_per_s": self.account_connects_per_s,
            "client_connect_interval_s": self.client_connect_interval_s,
            "refuse": self.refuse,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "ConnectLimits":
        rate = data.get("account_connects_per_s")
        return cls(
            account_connects_per_s=None if rate is None else float(str(rate)),
            client_connect_interval_s=float(str(data.get("client_connect_interval_s", 1.0))),
            refuse=str(data.get("refuse", "close")),
        )


def build_plugin(directory: Path) -> Path:
    """Compiles the plugin into `directory` (once per source version)."""
    source = resources.files("iotdr.testbed").joinpath(_SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    plugin = directory / f"connect_limits-{digest}.so"
    if plugin.exists():
        return plugin
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise PrerequisiteError(f"no C compiler for the CONNECT limits plugin: {_HEADERS_HINT}")
    directory.mkdir(parents=True, exist_ok=True)
    source_path = directory / _SOURCE
    source_path.write_bytes(source)
    building = plugin.with_suffix(".tmp")
    argv = [compiler, "-shared", "-fPIC", "-O2", "-o", str(building), str(source_path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["?"])[0]
        raise PrerequisiteError(
            f"building the CONNECT limits plugin failed: {first}; {_HEADERS_HINT}"
        )
    building.replace(plugin)
    return plugin


def plugin_config(plugin: Path, limits: ConnectLimits, stats_file: Path) -> str:
    """mosquitto.conf lines that load the plugin with these limits."""
    rate = limits.account_connects_per_s or 0
    interval_ms = round(limits.client_connect_interval_s * 1000)
    return (
        f"plugin {plugin}\n"
        f"plugin_opt_account_connects_per_s {rate:g}\n"
        f"plugin_opt_client_connect_interval_ms {interval_ms}\n"
        f"plugin_opt_refuse {limits.refuse}\n"
        f"plugin_opt_stats_file {stats_file}\n"
    )


@dataclass(frozen=True, slots=True)
class SecondCounts:
    """CONNECTs a region saw in one second of wall-clock time."""

    unix_second: int
    accepted: int
    refused_account: int
    refused_client: int

    @property
    def refused(self) -> int:
        return self.refused_account + self.refused_client


def read_stats(stats_file: Path) -> list[SecondCounts]:
    """The per-second counts the plugin wrote (empty if none yet)."""
    try:
        lines = stats_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    counts = []
    for line in lines:
        fields = line.split()
        if len(fields) == 4 and all(f.isdigit() for f in fields):
            second, accepted, account, client = (int(f) for f in fields)
            counts.append(SecondCounts(second, accepted, account, client))
    return counts
