"""The probes' SSL contexts are made at the first TLS probe, not at start
(the first one costs a process 1.5 MiB of RSS), and files Python's ssl
cannot load make that probe fail as a TLS failure, never raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.settings import parse_settings
from iotdr.agent.probes import ProbeFailedError, TlsContexts


def settings(directory: Path) -> TlsContexts:
    tls = {name: str(directory / f"{name}.pem") for name in ("ca_file", "cert_file", "key_file")}
    data = {"client_id": "d", "tls": tls, "endpoints": {"primary": {"host": "h"}}}
    return TlsContexts(parse_settings(data, "test.yaml"))


def test_nothing_is_loaded_before_a_tls_probe(tmp_path: Path) -> None:
    settings(tmp_path / "missing")  # files that do not exist: no error yet


@pytest.mark.parametrize("port", [8883, 443])
def test_unloadable_files_fail_the_probe_as_tls(tmp_path: Path, port: int) -> None:
    contexts = settings(tmp_path)
    for name in ("ca_file", "cert_file", "key_file"):
        (tmp_path / f"{name}.pem").write_text("not PEM\n")
    with pytest.raises(ProbeFailedError) as failed:
        contexts.for_port(port)
    assert failed.value.kind is FailureKind.TLS
    assert "cannot load the TLS files for probes" in failed.value.detail
