"""The networks gateways live on, added to a running testbed.

- `serve_port_443(testbed, role)`: the region also answers on port 443 the
  way AWS IoT does there, only to clients that offer the ALPN protocol
  `x-amzn-mqtt-ca` (see `alpn_gate`); many sites block 8883.
- `start_http_proxy(testbed)`: a real HTTP proxy (Debian's tinyproxy) in the
  namespace that tunnels CONNECT to ports 443 and 8883, as corporate
  networks require; its log shows every tunnel it opened.

Both run inside the testbed's namespace, so `down` stops them with the rest.
"""

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from iotdr.testbed import netns, processes
from iotdr.testbed.errors import PrerequisiteError
from iotdr.testbed.testbed import Testbed
from iotdr.testbed.topology import REGION_PORT, resolve_role

ALPN_PORT = 443
PROXY_ADDRESS = "127.0.0.1"
PROXY_PORT = 3128


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProxyInfo:
    url: str  # as seen from inside the namespace
    pid: int
    log: Path


def serve_port_443(testbed: Testbed, role: str) -> int:
    """Start the ALPN gate on the region's address, port 443; its pid."""
    region = testbed.info.region(resolve_role(role))
    log_path = testbed.directory / "logs" / f"{region.name}-alpn-gate.log"
    argv = [
        sys.executable, "-m", "iotdr.testbed.alpn_gate",
        "--listen", f"{region.address}:{ALPN_PORT}",
        "--upstream", f"{region.address}:{REGION_PORT}",
    ]  # fmt: skip
    return _spawn(testbed, argv, log_path, (region.address, ALPN_PORT), f"ALPN gate {region.name}")


def start_http_proxy(testbed: Testbed) -> HttpProxyInfo:
    """Start tinyproxy on 127.0.0.1:3128 inside the namespace."""
    tinyproxy = shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/sbin:/usr/bin")
    if tinyproxy is None:
        raise PrerequisiteError("tinyproxy is not installed (apt-get install tinyproxy)")
    config = testbed.directory / "tinyproxy.conf"
    config.write_text(
        "# HTTP proxy of the testbed's gateway network: CONNECT tunnels only\n"
        "User nobody\nGroup nogroup\n"
        f"Listen {PROXY_ADDRESS}\nPort {PROXY_PORT}\n"
        "Timeout 600\nMaxClients 100\nLogLevel Connect\n"
        f"Allow {PROXY_ADDRESS}\n"
        f"ConnectPort {ALPN_PORT}\nConnectPort {REGION_PORT}\n"
    )
    log_path = testbed.directory / "logs" / "tinyproxy.log"
    # -d: stay in the foreground, logging to stdout (into log_path).
    argv = [tinyproxy, "-d", "-c", str(config)]
    pid = _spawn(testbed, argv, log_path, (PROXY_ADDRESS, PROXY_PORT), "tinyproxy")
    return HttpProxyInfo(url=f"http://{PROXY_ADDRESS}:{PROXY_PORT}", pid=pid, log=log_path)


def _spawn(
    testbed: Testbed, argv: list[str], log_path: Path, listen: tuple[str, int], what: str
) -> int:
    address, port = listen
    inode = netns.inode(testbed.netns)
    pid = processes.spawn_daemon(testbed.netns_argv(argv), log_path)
    processes.wait_until(
        lambda: processes.is_listening(pid, inode, address, port),
        pid=pid,
        what=what,
        log_path=log_path,
    )
    return pid
