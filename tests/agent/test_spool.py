"""The spool, the AWS limits and the bridge mappings, without a broker."""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from iotdr.agent.bridge import Bridge
from iotdr.agent.core.aws_limits import limit_violation
from iotdr.agent.core.bridge_settings import BridgeSettings, FromCloud, ToCloud
from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import parse_settings
from iotdr.agent.spool import DeadLetter, DiskFullError, Incoming, Spool, SpoolFullError
from tests.small_disk import fill, read_only, small_disk


def test_append_survives_reopen_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=10_000)
    spool.append([Incoming("a", b"1", 1), Incoming("b", b"22", 1)])
    spool.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=10_000)
    stored = again.after(0, 10)
    assert [(m.topic, m.payload) for m in stored] == [("a", b"1"), ("b", b"22")]
    assert again.stats().depth == 2 and again.stats().bytes == 3
    assert len({m.msg_id for m in stored}) == 2
    assert again.delete([stored[0].id]) == 1
    assert again.delete([stored[0].id]) == 0  # a second PUBACK changes nothing
    assert again.stats().depth == 1


def test_cap_refuses_whole_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=5000)
    spool.append([Incoming("a", b"x" * 4000, 1)])
    with pytest.raises(SpoolFullError):
        spool.append([Incoming("a", b"x" * 600, 1), Incoming("a", b"x" * 600, 1)])
    assert spool.stats().depth == 1


def test_full_disk_refuses_a_batch_and_keeps_what_was_stored(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 512) as disk:
        spool = Spool(disk / "s.sqlite", max_bytes=10 * 1024 * 1024)
        spool.append([Incoming("a", b"kept", 1)])
        filler = fill(disk)
        batch = [Incoming("a", b"x" * 1000, 1) for _ in range(200)]
        with pytest.raises(DiskFullError):
            spool.append(batch)
        assert spool.stats().depth == 1 and spool.stats().bytes == 4
        filler.unlink()
        spool.append(batch)  # room again: the same connection goes on
        assert spool.stats().depth == 201
        spool.close()
        again = Spool(disk / "s.sqlite", max_bytes=10 * 1024 * 1024)
        assert [m.payload for m in again.after(0, 1)] == [b"kept"]
        assert again.stats().depth == 201
        again.close()


def test_full_disk_at_open_is_not_corruption(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 256) as disk:
        fill(disk)
        with pytest.raises(DiskFullError):
            Spool(disk / "s.sqlite", max_bytes=10_000)
        assert not list(disk.glob("*.corrupt-*"))


def test_drop_oldest_only_touches_droppable(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=5000)
    spool.append(
        [
            Incoming("keep", b"x" * 2000, 1),
            Incoming("tele", b"x" * 2000, 1, True),
            Incoming("tele", b"x" * 900, 1, True),
        ]
    )
    assert spool.drop_oldest_droppable(1500) == 1
    assert [m.topic for m in spool.after(0, 10)] == ["keep", "tele"]


def test_dead_letters_are_kept_with_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=5000)
    spool.append([Incoming("a", b"1", 1)], [DeadLetter("bad", b"p", "too big")])
    spool.move_to_dead_letters(spool.after(0, 1)[0].id, "refused")
    assert spool.dead_letters() == [("bad", b"p", "too big"), ("a", b"1", "refused")]
    assert spool.stats().dead_letters == 2 and spool.stats().depth == 0


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"garbage" * 1000)
    spool = Spool(path, max_bytes=5000)
    assert spool.recovered_from is not None
    assert Path(spool.recovered_from).read_bytes().startswith(b"garbage")
    spool.append([Incoming("a", b"1", 1)])
    assert spool.stats().depth == 1


@pytest.mark.parametrize(
    ("topic", "size", "reserved", "problem"),
    [
        ("dt/a", 128 * 1024, False, None),
        ("dt/a", 128 * 1024 + 1, False, "payload"),
        ("a/b/c/d/e/f/g/h", 1, False, None),
        ("a/b/c/d/e/f/g/h/i", 1, False, "slashes"),
        ("x" * 257, 1, False, "bytes exceeds"),
        ("dt/+/a", 1, False, "wildcards"),
        ("$aws/things/t/shadow/update", 1, False, "reserved"),
        ("$aws/things/t/shadow/update", 1, True, None),
    ],
)
def test_aws_limits(topic: str, size: int, reserved: bool, problem: str | None) -> None:
    found = limit_violation(topic, b"x" * size, allow_reserved=reserved)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_topic_mapping() -> None:
    assert (
        ToCloud(filter="s/#", strip_prefix="s/", add_prefix="dt/gw/").cloud_topic("s/t1")
        == "dt/gw/t1"
    )
    assert (
        FromCloud(filter="cmd/#", strip_prefix="cmd/dev/", add_prefix="c/").local_topic(
            "cmd/dev/reboot"
        )
        == "c/reboot"
    )


def test_bridge_config_errors_name_the_list_entry() -> None:
    base = {
        "client_id": "d",
        "tls": {"ca_file": "a", "cert_file": "b", "key_file": "c"},
        "endpoints": {"primary": {"host": "h"}},
    }
    with pytest.raises(ConfigError, match=r"bridge.to_cloud\[1\].filter: is required"):
        parse_settings({**base, "bridge": {"to_cloud": [{"filter": "a/#"}, {"qos": 1}]}}, "f")
    with pytest.raises(ConfigError, match=r"bridge.to_cloud\[0\].qos: is not a known"):
        parse_settings({**base, "bridge": {"to_cloud": [{"filter": "a/#", "qos": 1}]}}, "f")


def test_spool_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 12 item 10: every payload is in the spool; others cannot read it."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "spool.sqlite"
        spool = Spool(path, max_bytes=1 << 20)
        spool.append([Incoming("t", b"secret", 1)])
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("spool.sqlite*")}
        spool.close()
        assert modes["spool.sqlite"] == 0o600
        assert modes.get("spool.sqlite-wal", 0o600) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        # A spool left readable by an older version is taken back.
        path.chmod(0o644)
        Spool(path, max_bytes=1 << 20).close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_spool_that_filled_its_disk_drains_once_acknowledged(tmp_path: Path) -> None:
    """Issue 12 item 1: the spool itself fills a 2 MiB tmpfs; deleting the
    acknowledged rows must still work, and the freed room takes new ones."""
    with small_disk(tmp_path / "disk", 2048) as disk:
        path = disk / "spool.sqlite"
        spool = Spool(path, max_bytes=100 * 1024 * 1024)
        stored = 0
        with pytest.raises(DiskFullError):
            for _ in range(10_000):
                spool.append([Incoming("t", os.urandom(1000), 1) for _ in range(10)])
                stored += 10
        assert stored > 200
        ids = [m.id for m in spool.after(0, stored)]
        assert spool.delete(ids) == stored  # once the region acknowledged them all
        assert spool.depth == 0
        spool.append([Incoming("t", os.urandom(1000), 1) for _ in range(100)])
        spool.close()
        again = Spool(path, max_bytes=100 * 1024 * 1024)
        assert again.depth == 100  # the deletes were durable: nothing is sent twice
        again.close()


def test_bridge_with_a_read_only_spool_reports_and_retries(tmp_path: Path) -> None:
    """Issue 12 item 2: the spool cannot be opened (read-only file system):
    start() returns, status says why, and once the directory is writable
    the spool opens and takes messages; no hang, no dead thread."""
    state = tmp_path / "state"
    bridge = Bridge(
        BridgeSettings(),
        "dev-1",
        state,
        publish=lambda *_: Future(),
        trouble=lambda *_: None,
    )
    with read_only(state):
        bridge.start(connect_local=False)  # returns: no hang on the spool thread
        spool = bridge.status()["spool"]
        assert "cannot be opened" in spool["error"] and spool["path"].startswith(str(state))
        stored = bridge.submit("dt/a", b"kept")
        assert not stored.done()  # waits for the spool, not lost
    try:
        stored.result(timeout=60)  # a bound for a hang, not a timing assertion
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            spool = bridge.status()["spool"]
            if spool.get("depth") == 1 and spool.get("error") is None:
                break
            time.sleep(0.05)
        assert bridge.status()["spool"]["error"] is None
        assert bridge.status()["spool"]["depth"] == 1
    finally:
        bridge.stop()
