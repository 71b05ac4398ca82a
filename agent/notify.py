"""systemd service notification (sd_notify) with the standard library.

The protocol is a datagram of newline-separated `KEY=VALUE` fields sent to
the Unix socket named by `$NOTIFY_SOCKET`; sd_notify(3) documents it as a
stable interface. A name starting with `@` is an abstract socket (leading
NUL byte). Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op,
so the agent runs the same everywhere, and no C library or compiler is
needed on a gateway.

The watchdog: systemd sets `WATCHDOG_USEC` (and `WATCHDOG_PID`) when the
unit has `WatchdogSec=`; the service must send `WATCHDOG=1` more often
than that. sd_watchdog_enabled(3) recommends every half interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_warned: set[str] = set()


def _address(name: str) -> str | None:
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # e.g. vsock:CID:PORT (systemd 254+, VMs): not used on gateways


def notify(*fields: str) -> bool:
    """Send e.g. notify("READY=1", "STATUS=connected"); True if sent.

    Never raises: a service manager that went away must not stop the agent.
    """
    name = os.environ.get("NOTIFY_SOCKET")
    if not name:
        return False
    address = _address(name)
    if address is None:
        _warn_once(name, f"NOTIFY_SOCKET={name!r}: only Unix sockets are supported")
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        _warn_once(name, f"cannot notify the service manager at {name}: {exc}")
        return False
    return True


def reloading() -> bool:
    """RELOADING=1 with the monotonic timestamp systemd 253+ asks for."""
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={now_us}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None
    when the watchdog is off or meant for another process."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        _warn_once(usec, f"WATCHDOG_USEC={usec!r} is not a number; watchdog not served")
        return None
    if value <= 0:
        return None
    return value / 2_000_000


class Watchdog:
    """WATCHDOG=1 every `interval_s` from the event loop itself, only while
    `alive()`: a wedged loop (or a process frozen by SIGSTOP) sends nothing,
    and the first time `alive()` is false the pings stop for good, so
    systemd restarts the service."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval_s: float, alive: Callable[[], bool]
    ) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._alive = alive
        self._handle: asyncio.TimerHandle | None = None
        self.pings = 0
        self.stopped = False

    def start(self) -> None:
        log.debug("watchdog: pinging every %.1f s", self._interval_s)
        self._ping()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.stopped = True

    def _ping(self) -> None:
        self._handle = None
        if not self._alive():
            log.error("the decision core failed; no more watchdog pings")
            self.stopped = True
            return
        notify("WATCHDOG=1")
        self.pings += 1
        self._handle = self._loop.call_later(self._interval_s, self._ping)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)
