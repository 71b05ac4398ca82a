"""Logging to the systemd journal with the standard library.

Under systemd, stderr is a stream into journald (`$JOURNAL_STREAM` names
its device and inode). Lines written there all get the unit's default
priority, so `journalctl -p warning` would show nothing. Instead the agent
sends each record over journald's native protocol (a datagram of fields
to /run/systemd/journal/socket, documented as stable in systemd's "Native
Journal Protocol"): `PRIORITY` from the record's level, and the current
region and endpoint as `IOTDR_REGION` / `IOTDR_ENDPOINT`, so
`journalctl -u iotdr-agent IOTDR_REGION=us-east-1` works. Should a datagram
not go through (too large, socket gone), the line goes to stderr with a
syslog `<N>` prefix, which journald also turns into a priority.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "iotdr-agent"

# syslog(3) priorities, as journald's PRIORITY field takes them.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels round down)."""
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def stderr_is_journal() -> bool:
    """True when stderr is the stream systemd connected to journald."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _field(key: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:
        # Binary form: name, newline, little-endian 64-bit length, data.
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Sends records to journald with PRIORITY and the agent's fields."""

    def __init__(self, address: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self._address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields(self, record: logging.LogRecord) -> bytes:
        fields = [
            _field("MESSAGE", self.format(record)),
            _field("PRIORITY", str(priority(record.levelno))),
            _field("SYSLOG_IDENTIFIER", IDENTIFIER),
            _field("LOGGER", record.name),
            _field("CODE_FILE", str(record.pathname or "")),
            _field("CODE_LINE", str(record.lineno)),
            _field("CODE_FUNC", str(record.funcName or "")),
        ]
        for attribute, key in (("region", "IOTDR_REGION"), ("endpoint", "IOTDR_ENDPOINT")):
            value = getattr(record, attribute, "-")
            if value and value != "-":
                fields.append(_field(key, str(value)))
        return b"".join(fields)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.fields(record)
            try:
                self._socket.sendto(data, self._address)
            except OSError:
                prefix = f"<{priority(record.levelno)}>"
                sys.stderr.write(prefix + self.format(record).replace("\n", "\n" + prefix) + "\n")
                sys.stderr.flush()
        except Exception:  # logging must never take the agent down
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()
