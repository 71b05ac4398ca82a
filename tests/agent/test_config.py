"""Configuration: layering, provenance in errors, and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotdr.agent.config_files import load, load_for, system_layers
from iotdr.agent.core.bridge_settings import BridgeSettings
from iotdr.agent.core.endpoints import (
    Endpoint,
    host_allowed,
    parse_region_roles,
    region_of,
    with_region,
)
from iotdr.agent.core.errors import ConfigError, TxtError
from iotdr.agent.core.settings import (
    BackoffSettings,
    ConnectionSettings,
    DnsSettings,
    FailbackSettings,
    HeartbeatSettings,
    JitrSettings,
    ProbeDepth,
)
from iotdr.agent.main import main
from iotdr.testbed.layout import Layout
from iotdr.testbed.pki import create_pki

BASE = """
client_id: dev-1
tls: {ca_file: /c/ca.pem, cert_file: /c/d.pem, key_file: /c/d.key}
endpoints:
  primary: {host: abc-ats.iot.us-east-1.amazonaws.com}
  secondary: {host: abc-ats.iot.us-west-2.amazonaws.com}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_layers_in_order_vendor_etc_dropins_then_config(tmp_path: Path) -> None:
    write(tmp_path / "usr/lib/iotdr/agent.yaml", BASE + "failback: {probe_interval_s: 7}\n")
    write(tmp_path / "etc/iotdr/agent.yaml", "failback: {stability_window_s: 20}\n")
    write(tmp_path / "etc/iotdr/agent.d/10-a.yaml", "failback: {probe_depth: mqtt}\n")
    write(tmp_path / "etc/iotdr/agent.d/20-b.yaml", "failback: {stability_window_s: 30}\n")
    extra = write(tmp_path / "mine.yaml", "client_id: dev-9\n")
    loaded = load_for(extra, tmp_path)
    settings = loaded.settings
    assert [p.name for p in loaded.files] == [
        "agent.yaml",
        "agent.yaml",
        "10-a.yaml",
        "20-b.yaml",
        "mine.yaml",
    ]
    assert settings.client_id == "dev-9"
    assert settings.failback.probe_interval_s == 7
    assert settings.failback.probe_depth is ProbeDepth.MQTT
    assert settings.failback.stability_window_s == 30
    assert settings.dns.txt_record is None


def test_no_files_at_all_is_a_clear_error(tmp_path: Path) -> None:
    assert system_layers(tmp_path) == []
    with pytest.raises(ConfigError, match="no configuration file"):
        load_for(None, tmp_path)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("failback: {probe_interval_s: -1}\n", "failback.probe_interval_s", "at least"),
        ("failback: {probe_depth: icmp}\n", "failback.probe_depth", "one of tcp, tls, mqtt"),
        ("failback: {enabled: maybe}\n", "failback.enabled", "true or false"),
        ("connection: {keepalive_s: 5000}\n", "connection.keepalive_s", "between 1 and 1200"),
        (
            "connection: {min_connect_interval_s: 0.2}\n",
            "connection.min_connect_interval_s",
            "at least 1.0",
        ),
        ("dns: {allowlist: []}\n", "dns.allowlist", "non-empty list"),
        ("dns: {min_ttl_s: 10, max_ttl_s: 5}\n", "dns.max_ttl_s", "at least 10"),
        ("failbak: {enabled: false}\n", "failbak", "not a known setting"),
        ("endpoints: {primary: {host: h, port: 99999}}\n", "endpoints.primary.port", "between"),
        ("tls: {cert_file: ''}\n", "tls.cert_file", "non-empty string"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    base = write(tmp_path / "etc/iotdr/agent.yaml", BASE)
    bad = write(tmp_path / "etc/iotdr/agent.d/50-bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load([base, bad])
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert caught.value.source == str(bad)
    assert str(bad) in str(caught.value) and key in str(caught.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "agent.yaml", BASE + "failback: {enabled: true\n")
    with pytest.raises(ConfigError) as caught:
        load([bad])
    assert caught.value.source == str(bad)
    assert caught.value.key.startswith("line ")


def test_missing_required_key(tmp_path: Path) -> None:
    f = write(tmp_path / "agent.yaml", "tls: {ca_file: a, cert_file: b, key_file: c}\n")
    with pytest.raises(ConfigError, match="client_id: is required"):
        load([f])


def test_check_config_prints_merged_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # check-config also checks the TLS files, so they must be real ones.
    layout = Layout.at(tmp_path / "tb")
    create_pki(layout)
    pki = layout.pki
    real = (
        BASE.replace("/c/ca.pem", f"{pki}/ca.pem")
        .replace("/c/d.pem", f"{pki}/device.pem")
        .replace("/c/d.key", f"{pki}/device.key")
    )
    f = write(tmp_path / "agent.yaml", real)
    assert main(["--root", str(tmp_path), "check-config", "--config", str(f)]) == 0
    assert '"client_id": "dev-1"' in capsys.readouterr().out
    bad = write(tmp_path / "bad.yaml", real + "heartbeat: {interval_s: fast}\n")
    assert main(["--root", str(tmp_path), "check-config", "--config", str(bad)]) == 2
    assert "heartbeat.interval_s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("abc-ats.iot.us-east-1.amazonaws.com", "us-east-1"),
        ("abc-ats.iot.region-a.iotdr.test.", "region-a"),
        ("iot.example.com", None),
        ("abc.notiot.us-east-1.amazonaws.com", None),
    ],
)
def test_region_is_the_third_label(host: str, region: str | None) -> None:
    assert region_of(host) == region


def test_allowlist_and_region_swap() -> None:
    allow = ("*-ats.iot.*.amazonaws.com",)
    assert host_allowed("ABC-ats.iot.eu-west-1.amazonaws.com.", allow)
    assert not host_allowed("abc-ats.iot.eu-west-1.amazonaws.com.evil.test", allow)
    swapped = with_region(Endpoint(host="abc-ats.iot.us-east-1.amazonaws.com"), "us-west-2")
    assert swapped.host == "abc-ats.iot.us-west-2.amazonaws.com"


@pytest.mark.parametrize(
    "text", ["", "[]", '{"primary": "a"}', '{"primary": "a", "secondary": "a"}', "{x"]
)
def test_bad_txt_is_refused(text: str) -> None:
    with pytest.raises(TxtError):
        parse_region_roles(text)


def test_good_txt() -> None:
    roles = parse_region_roles('{"primary": "us-east-1", "secondary": "us-west-2"}')
    assert (roles.primary, roles.secondary) == ("us-east-1", "us-west-2")


def test_example_config_documents_the_real_defaults() -> None:
    example = Path(__file__).parents[2] / "config" / "agent.example.yaml"
    settings = load([example]).settings
    assert settings.dns == DnsSettings()
    assert settings.connection == ConnectionSettings()
    assert settings.backoff == BackoffSettings()
    assert settings.failback == FailbackSettings()
    assert settings.jitr == JitrSettings()
    assert settings.heartbeat == HeartbeatSettings()
    assert settings.bridge == BridgeSettings()
    assert settings.log_level == "info"
