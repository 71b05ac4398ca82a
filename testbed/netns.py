"""Linux network namespaces, as `ip netns` manages them.

`inside()` moves only the calling thread: network namespaces are a per-thread
attribute, a socket stays in the namespace it was created in, and threads
inherit the namespace of the thread that starts them. So test code can open
sockets (or start a client's network thread) inside a testbed without the
rest of the process noticing.
"""

import ctypes
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from iotdr.testbed.errors import TestbedError
from iotdr.testbed.processes import run

NETNS_RUN_DIR = Path("/var/run/netns")  # where iproute2 bind-mounts named namespaces
NETNS_ETC_DIR = Path("/etc/netns")  # `ip netns exec` bind-mounts files from here over /etc
_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def inode(name: str) -> int:
    """Identifies the namespace itself, independent of its name."""
    try:
        return os.stat(NETNS_RUN_DIR / name).st_ino
    except FileNotFoundError as exc:
        raise TestbedError(f"network namespace {name} does not exist") from exc


def resolv_conf(name: str) -> Path:
    return NETNS_ETC_DIR / name / "resolv.conf"


def create(ip: str, name: str, *, nameserver: str, extra_address: str) -> None:
    """Creates the namespace with loopback up, `extra_address` on it, and its resolv.conf."""
    if exists(name):
        raise TestbedError(f"network namespace {name} already exists")
    run([ip, "netns", "add", name], f"create network namespace {name}")
    run([ip, "-n", name, "link", "set", "lo", "up"], f"bring up lo in {name}")
    run([ip, "-n", name, "address", "add", f"{extra_address}/32", "dev", "lo"], f"address {name}")
    resolv_conf(name).parent.mkdir(parents=True, exist_ok=True)
    resolv_conf(name).write_text(
        f"# iotdr testbed {name}: names resolve through the testbed's DNS server\n"
        f"nameserver {nameserver}\n"
    )


def delete(ip: str, name: str) -> None:
    """Removes the namespace's name and its /etc/netns files (idempotent)."""
    if exists(name):
        run([ip, "netns", "delete", name], f"delete network namespace {name}")
    shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)


def exec_argv(ip: str, name: str, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed so that it runs inside the namespace, with its resolv.conf."""
    return [ip, "netns", "exec", name, *argv]


def _setns(fd: int, name: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise TestbedError(f"cannot switch network namespace ({name}): setns: {reason}")


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Runs the body with the current thread inside the namespace `name`."""
    try:
        target = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise TestbedError(f"network namespace {name} does not exist") from exc
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, name)
            try:
                yield
            finally:
                _setns(original, "back from " + name)
        finally:
            os.close(original)
    finally:
        os.close(target)
