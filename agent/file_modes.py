"""Start-up checks of the TLS files: readable by the agent, private key
private, certificates not writable by strangers.

Each problem is one ConfigError naming the file, the key and the command
that fixes it, so `systemctl status iotdr-agent` tells an operator what to
type (the unit runs as user `iotdr`, which must be able to read the files).
"""

from __future__ import annotations

import os
import pwd
import stat

from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import Settings


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _describe(st: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}"


def check_tls_files(settings: Settings, source: str) -> None:
    """Raise ConfigError for the first TLS file the agent must not use."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(settings.tls, key)
        try:
            st = os.stat(path)
        except PermissionError:
            raise ConfigError(
                source,
                f"tls.{key}",
                f"user {_user()} cannot reach {path}: a directory on the way is closed to it",
            ) from None
        except OSError as exc:
            raise ConfigError(source, f"tls.{key}", f"{path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(source, f"tls.{key}", f"{path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if not os.access(path, os.R_OK):
            raise ConfigError(
                source,
                f"tls.{key}",
                f"user {_user()} cannot read {path} ({_describe(st)}); fix with "
                f"`chgrp iotdr {path} && chmod g+r {path}`",
            )
        if key == "key_file" and mode & 0o007:
            raise ConfigError(
                source,
                f"tls.{key}",
                f"private key {path} is open to every user ({_describe(st)}); fix with "
                f"`chmod o-rwx {path}` (0640, group iotdr, is enough for the agent)",
            )
        if key != "key_file" and mode & 0o022:
            raise ConfigError(
                source,
                f"tls.{key}",
                f"{path} can be replaced by other users ({_describe(st)}); fix with "
                f"`chmod go-w {path}`",
            )
