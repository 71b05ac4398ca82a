"""Can this machine run a configuration? Checked by `check-config`, before
`run` starts and before a SIGHUP reload is applied.

`config_files` checks what a configuration says; this module checks what
it points at: the TLS files (regular, readable, small, and accepted both by
Python's ssl module, which the failback probes use, and by the AWS CRT,
which the cloud connection uses) and, on a gateway, that the spool's
directory can be written. Each problem is one `ConfigError` naming the file
that set the key, so `run` never meets what `check-config` passed.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from iotdr.agent.config_files import LoadedConfig
from iotdr.agent.core.errors import ConfigError

# A CA bundle is the largest of the three; the system one is about 200 KiB.
MAX_TLS_FILE_BYTES = 4 * 1024 * 1024
_TLS_KEYS = ("ca_file", "cert_file", "key_file")


def check_environment(loaded: LoadedConfig, *, python_ssl: bool = True) -> None:
    """Raise ConfigError for the first thing `run` could not use.

    `python_ssl=False` (the daemon itself) leaves out the parse by Python's
    ssl module: the first SSL context a process makes costs it 1.5 MiB of
    RSS for good (OpenSSL's initialisation), and the daemon needs one only
    for a TLS probe, made when one runs (`probes.TlsContexts`). The
    commands that precede a start or a reload (`check-config`, `reload`,
    systemd's ExecReload) still parse the files both ways."""
    settings = loaded.settings
    for key in _TLS_KEYS:
        _check_tls_file(loaded, key, getattr(settings.tls, key))
    if python_ssl:
        _check_python_ssl(loaded)
    _check_crt(loaded)
    if settings.bridge.enabled:
        spool = settings.bridge.spool.path
        if spool is not None:
            _check_writable(loaded, "bridge.spool.path", Path(spool).parent)
        else:
            _check_writable(loaded, "state_dir", Path(settings.state_dir))


def _error(loaded: LoadedConfig, key: str, problem: str) -> ConfigError:
    return ConfigError(loaded.source_of(key), key, problem)


def _check_tls_file(loaded: LoadedConfig, key: str, path: str) -> None:
    dotted = f"tls.{key}"
    try:
        # O_NONBLOCK: a FIFO named here must not block the check.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(loaded, dotted, f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _error(loaded, dotted, f"{path} is not a regular file")
    if info.st_size > MAX_TLS_FILE_BYTES:
        raise _error(loaded, dotted, f"{path} is larger than {MAX_TLS_FILE_BYTES} bytes")


def _check_python_ssl(loaded: LoadedConfig) -> None:
    tls = loaded.settings.tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=tls.ca_file)
    except (ssl.SSLError, ValueError) as exc:
        problem = f"{tls.ca_file} holds no CA certificate: {exc}"
        raise _error(loaded, "tls.ca_file", problem) from None
    try:
        # An encrypted key would make OpenSSL prompt on the terminal: refuse it.
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except (ssl.SSLError, ValueError) as exc:
        raise _error(
            loaded,
            "tls.key_file",
            f"{tls.cert_file} and {tls.key_file} are not a certificate and its "
            f"unencrypted private key: {exc}",
        ) from None


def _check_crt(loaded: LoadedConfig) -> None:
    """The CRT parses the files itself and is stricter about some of them."""
    tls = loaded.settings.tls
    from iotdr.agent.cloud_mqtt import Transport  # noqa: PLC0415 (awscrt loads slowly)

    try:
        Transport.tls_context(tls)
    except Exception as exc:  # awscrt raises RuntimeError/AwsCrtError with a code name
        raise _error(loaded, "tls.cert_file", f"the AWS CRT refused the TLS files: {exc}") from None


def _check_writable(loaded: LoadedConfig, key: str, directory: Path) -> None:
    """The directory, or the nearest ancestor that exists (it will be
    created there), must be writable: a read-only mount is refused here."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _error(loaded, key, f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _error(loaded, key, f"{existing} is not writable (read-only file system?)")
