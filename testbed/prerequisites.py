"""Finds the programs the testbed runs and says plainly what is missing."""

import os
import resource
import shutil
from dataclasses import dataclass

from iotdr.testbed.errors import PrerequisiteError

# Debian installs daemons in sbin, which a non-login root shell may lack.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)
_INSTALL_HINT = "run ./scripts/install-deps or apt-get install"


@dataclass(frozen=True, slots=True)
class Tools:
    """Absolute paths of the programs a testbed runs."""

    ip: str
    iptables: str
    mosquitto: str
    knotd: str
    knotc: str


def _find(program: str, package: str) -> str:
    path = shutil.which(program, path=_SEARCH_PATH)
    if path is None:
        raise PrerequisiteError(f"{program} not found: {_INSTALL_HINT} {package}")
    return path


def find_tools() -> Tools:
    """Checks root and every program; raises PrerequisiteError with a one-line fix."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the testbed needs root: it creates network namespaces and iptables rules"
        )
    return Tools(
        ip=_find("ip", "iproute2"),
        iptables=_find("iptables", "iptables"),
        mosquitto=_find("mosquitto", "mosquitto"),
        knotd=_find("knotd", "knot"),
        knotc=_find("knotc", "knot"),
    )


# A region must hold 10,000+ mutual-TLS connections (the fleet simulator),
# and processes inherit this limit from whoever starts the testbed.
OPEN_FILES = 1_048_576


def raise_open_files_limit(wanted: int = OPEN_FILES) -> None:
    """Raises this process's open-file limit (root may raise the hard limit),
    so the brokers started from it and the simulator can hold many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
