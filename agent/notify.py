"""systemd notification (sd_notify) when run under systemd.

Uses systemd-python when installed; without it, or without NOTIFY_SOCKET,
notification is a no-op so the agent runs the same outside systemd.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

try:
    from systemd import daemon as _systemd_daemon
except ImportError:  # pragma: no cover - depends on the install
    _systemd_daemon = None


def notify(*fields: str) -> None:
    """Send e.g. notify("READY=1", "STATUS=connected") to the service manager."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    if _systemd_daemon is None:
        log.warning("NOTIFY_SOCKET is set but systemd-python is not installed")
        return
    _systemd_daemon.notify("\n".join(fields))
