"""TLS files are checked at start: a private key open to every user, or a
certificate strangers can replace, stops the agent with the command to fix it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from iotdr.agent.config_files import load
from iotdr.agent.core.errors import ConfigError
from iotdr.agent.file_modes import check_tls_files

CONFIG = """
client_id: dev-1
tls: {{ca_file: {d}/ca.pem, cert_file: {d}/d.pem, key_file: {d}/d.key}}
endpoints:
  primary: {{host: abc-ats.iot.us-east-1.amazonaws.com}}
  secondary: {{host: abc-ats.iot.us-west-2.amazonaws.com}}
"""


def _files(tmp_path: Path, ca: int = 0o644, cert: int = 0o644, key: int = 0o640) -> Path:
    for name, mode in (("ca.pem", ca), ("d.pem", cert), ("d.key", key)):
        path = tmp_path / name
        path.write_text("-----BEGIN-----\n")
        path.chmod(mode)
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(d=tmp_path))
    return config


def test_the_usual_modes_pass(tmp_path: Path) -> None:
    loaded = load([_files(tmp_path)])
    check_tls_files(loaded.settings, "agent.yaml")


@pytest.mark.parametrize(
    ("modes", "key", "fix"),
    [
        ({"key": 0o644}, "tls.key_file", "chmod o-rwx"),
        ({"key": 0o604}, "tls.key_file", "chmod o-rwx"),
        ({"cert": 0o666}, "tls.cert_file", "chmod go-w"),
        ({"ca": 0o664}, "tls.ca_file", "chmod go-w"),
    ],
)
def test_a_bad_mode_names_the_key_and_the_fix(
    tmp_path: Path, modes: dict[str, int], key: str, fix: str
) -> None:
    loaded = load([_files(tmp_path, **modes)])
    with pytest.raises(ConfigError) as caught:
        check_tls_files(loaded.settings, "agent.yaml")
    message = str(caught.value)
    assert key in message and fix in message and "agent.yaml" in message


def test_a_missing_file(tmp_path: Path) -> None:
    loaded = load([_files(tmp_path)])
    (tmp_path / "d.pem").unlink()
    with pytest.raises(ConfigError, match=r"tls.cert_file.*No such file"):
        check_tls_files(loaded.settings, "agent.yaml")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to another user, which needs root")
def test_an_unreadable_key_says_how_to_let_the_agent_read_it() -> None:
    # pytest's tmp_path sits under 0700 directories `nobody` cannot enter.
    with tempfile.TemporaryDirectory() as directory:
        Path(directory).chmod(0o755)
        loaded = load([_files(Path(directory), key=0o600)])
        assert _as_nobody(lambda: check_tls_files(loaded.settings, "agent.yaml")) == 0


def _as_nobody(check: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # the child becomes `nobody`, as the unit runs as `iotdr`
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            check()
        except ConfigError as exc:
            code = 0 if "chgrp iotdr" in str(exc) and "chmod g+r" in str(exc) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
