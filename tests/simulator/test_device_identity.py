"""A device's settings are the fleet's with its own client id and TLS
files: what `dataclasses.replace` gives, field for field."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from iotdr.agent.core.settings import Settings, TlsSettings
from iotdr.simulator.scenario import for_device, load_scenario
from iotdr.simulator.virtual_fleet import PLACEHOLDER_TLS
from iotdr.simulator.virtual_run import virtual_settings

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def test_a_device_gets_the_fleets_settings_with_its_own_identity() -> None:
    fleet = virtual_settings(load_scenario(SCENARIOS / "region-hard-down.yaml"))
    device = for_device(fleet, "dev-7", PLACEHOLDER_TLS)
    assert device == replace(fleet, client_id="dev-7", tls=PLACEHOLDER_TLS)
    assert device.client_id == "dev-7" and fleet.client_id != "dev-7"


def test_every_other_field_is_the_fleets_own() -> None:
    markers: dict[str, Any] = {f.name: object() for f in fields(Settings)}
    fleet = Settings(**markers)
    tls = TlsSettings(ca_file="ca", cert_file="cert", key_file="key")
    device = for_device(fleet, "dev-1", tls)
    for f in fields(Settings):
        expected = {"client_id": "dev-1", "tls": tls}.get(f.name, markers[f.name])
        assert getattr(device, f.name) is expected, f.name
