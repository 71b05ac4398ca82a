"""Journal records over a real Unix datagram socket, parsed as journald does."""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotdr.agent.daemon import EndpointFilter
from iotdr.agent.journal import JournalHandler, priority, stderr_is_journal


def parse(data: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY\\n<u64 len>value\\n."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (length,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + length].decode()
            assert rest[8 + length : 9 + length] == b"\n"
            data = rest[9 + length :]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, logging.Logger, EndpointFilter]]:
    address = str(tmp_path / "journal")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(5.0)
        handler = JournalHandler(address)
        endpoint_filter = EndpointFilter()
        handler.addFilter(endpoint_filter)
        logger = logging.getLogger(f"iotdr.test.journal.{id(sock)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        yield sock, logger, endpoint_filter
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, "7"),
        (logging.INFO, "6"),
        (logging.WARNING, "4"),
        (logging.ERROR, "3"),
        (logging.CRITICAL, "2"),
    ],
)
def test_each_level_has_its_priority(
    journal: tuple[socket.socket, logging.Logger, EndpointFilter], level: int, expected: str
) -> None:
    sock, logger, _ = journal
    logger.log(level, "connect attempt %d failed", 3)
    fields = parse(sock.recv(65536))
    assert fields["PRIORITY"] == expected
    assert fields["MESSAGE"] == "connect attempt 3 failed"
    assert fields["SYSLOG_IDENTIFIER"] == "iotdr-agent"
    assert "IOTDR_REGION" not in fields  # not connected anywhere yet


def test_region_and_endpoint_fields_and_multiline_messages(
    journal: tuple[socket.socket, logging.Logger, EndpointFilter],
) -> None:
    sock, logger, endpoint_filter = journal
    endpoint_filter.region = "us-east-1"
    endpoint_filter.endpoint = "a1-ats.iot.us-east-1.amazonaws.com:8883"
    logger.warning("first line\nsecond line")
    fields = parse(sock.recv(65536))
    assert fields["MESSAGE"] == "first line\nsecond line"
    assert fields["IOTDR_REGION"] == "us-east-1"
    assert fields["IOTDR_ENDPOINT"] == "a1-ats.iot.us-east-1.amazonaws.com:8883"
    assert fields["PRIORITY"] == "4"


def test_without_a_journal_lines_carry_a_syslog_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = JournalHandler(str(tmp_path / "no-journal"))
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "disk full", "levelno": logging.ERROR}))
    handler.close()
    assert capsys.readouterr().err == "<3>disk full\n"


def test_custom_levels_round_down() -> None:
    assert priority(logging.WARNING + 5) == 4
    assert priority(5) == 7


def test_stderr_is_journal_compares_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stream").open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not stderr_is_journal()
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not stderr_is_journal()
