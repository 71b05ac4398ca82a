"""Scenario files: the fleet, the faults and when, the limits, the pass criteria.

A scenario is YAML, validated like the agent's configuration: anything
wrong raises `ConfigError` naming the file and the dotted key
(`scenario.yaml: timeline[2].fault: must be one of ...`), and unknown keys
are errors. Times in the timeline count from t=0, the moment the whole
fleet is connected and settled; `duration_s` is how long the run lasts
after that. See `config/scenarios/` for commented examples and the README
for every key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import Reader, Settings, TlsSettings, parse_settings

# Faults by the testbed's names; `cname` takes a target, the rest a region.
REGION_FAULTS = ("kill", "restore", "blackhole", "heal", "jitr")
DNS_FAULTS = ("cname", "dns-fail", "dns-heal")
FAULTS = REGION_FAULTS + DNS_FAULTS
DNS_FAIL_MODES = ("timeout", "servfail", "nxdomain", "refused")
REGION_NAMES = ("primary", "secondary")
# Agent settings a scenario may not override: each device has its own
# identity, and the simulator owns these resources.
_DEVICE_OWNED = ("client_id", "tls", "control_socket", "state_dir", "bridge")
# AWS IoT Core: at most 100 unacknowledged QoS 1 publishes per client.
AWS_MAX_INFLIGHT = 100
MAX_DEVICES = 10_000_000
DEFAULT_CLIENT_ID = "iotdr-sim-{index:05d}"
_MAX_FILE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    at_s: float
    fault: str
    region: str | None = None  # primary|secondary for region faults
    target: str | None = None  # cname: primary|secondary or a host name
    ttl: int | None = None  # cname: new TTL
    mode: str = "timeout"  # dns-fail
    on: bool = True  # jitr
    delay_s: float = 3.0  # jitr

    def describe(self) -> str:
        if self.fault == "cname":
            return f"cname -> {self.target}"
        if self.fault == "dns-fail":
            return f"dns-fail {self.mode}"
        if self.fault == "jitr":
            return f"jitr {self.region} {'on' if self.on else 'off'}"
        return f"{self.fault} {self.region}" if self.region else self.fault


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    devices: int
    client_id: str = DEFAULT_CLIENT_ID
    connect_rate_per_s: float = 100.0
    settle_s: float = 2.0
    publish_interval_s: float = 1.0
    qos: int = 1
    topic: str = "iotdr-sim/{client_id}/telemetry"
    payload_bytes: int = 64
    certificates: Path | None = None

    def client_ids(self, count: int | None = None) -> list[str]:
        return [self.client_id.format(index=i) for i in range(count or self.devices)]


_FLEET = Fleet(devices=1)  # the defaults


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The regions' emulated AWS IoT CONNECT quotas (testbed only)."""

    account_connects_per_s: float | None = 500.0
    client_connect_interval_s: float = 1.0
    refuse: str = "close"


@dataclass(frozen=True, slots=True, kw_only=True)
class Criteria:
    rto_p99_max_s: float | None = None
    recovered_min: float = 1.0
    lost_max: int = 0
    duplicated_max: int | None = None
    flaps_max: int = 0
    throttled_connects_max: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    source: str
    description: str
    duration_s: float
    drain_s: float
    seed: int
    fleet: Fleet
    timeline: tuple[Fault, ...]
    agent: Mapping[str, Any]  # overrides of the agent's settings, validated
    limits: Limits | None
    criteria: Criteria
    observe: bool = True  # count what reaches the regions (loss, duplicates)

    def with_devices(self, devices: int) -> Scenario:
        fleet = Fleet(**{**_fields(self.fleet), "devices": devices})
        return Scenario(**{**_fields(self), "fleet": fleet})

    def with_agent(self, overrides: Mapping[str, Any]) -> Scenario:
        merged = _merge(self.agent, overrides)
        device_settings(merged, base={}, source=self.source)  # validate
        return Scenario(**{**_fields(self), "agent": merged})

    def first_fault(self) -> Fault | None:
        return self.timeline[0] if self.timeline else None


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_scenario(path: Path) -> Scenario:
    """Reads and validates a scenario file; ConfigError names file and key."""
    source = str(path)
    try:
        if not path.is_file():
            raise ConfigError(source, "(file)", "not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(source, "(file)", f"larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, "(file)", "not UTF-8 text") from None
    return parse_scenario(text, source, default_name=path.stem)


def parse_scenario(text: str, source: str, *, default_name: str = "scenario") -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(source, where, f"YAML syntax error: {problem}") from None
    except RecursionError:
        raise ConfigError(source, "(file)", "nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(source, "(top level)", "must be a mapping (see config/scenarios/)")
    return _parse(data, source, default_name)


def _finite(reader: Reader, name: str, value: float) -> float:
    if not math.isfinite(value):
        raise reader.error(name, f"must be a finite number, got {value}")
    return value


def _seconds(reader: Reader, name: str, default: float, *, minimum: float = 0.0) -> float:
    return _finite(reader, name, reader.number(name, default, minimum=minimum))


# A rate is not a duration: AWS IoT raises the CONNECT quota far above the
# longest duration a settings file accepts (a day, in seconds).
MAX_RATE_PER_S = 10_000_000.0


def _rate(reader: Reader, name: str, default: float) -> float:
    return reader.number(name, default, minimum=0.1, maximum=MAX_RATE_PER_S)


def _parse(data: Mapping[str, Any], source: str, default_name: str) -> Scenario:
    top = Reader(data, source, "")
    fleet = _fleet(top.section("fleet"))
    duration = _seconds(top, "duration_s", -1.0, minimum=0.1)
    if duration < 0:
        raise top.error("duration_s", "is required")
    timeline = _timeline(top, duration)
    agent = top.raw("agent") or {}
    if not isinstance(agent, Mapping):
        raise top.error("agent", "must be a mapping of agent settings")
    for owned in _DEVICE_OWNED:
        if owned in agent:
            raise ConfigError(source, f"agent.{owned}", "is set per simulated device")
    device_settings(agent, base={}, source=source)
    limits = _limits(top)
    criteria = _criteria(top.section("criteria"))
    seed = top.integer("seed", 1, minimum=0, maximum=2**63 - 1)
    scenario = Scenario(
        name=top.string("name", default_name),
        source=source,
        description=top.string("description", ""),
        duration_s=duration,
        drain_s=_seconds(top, "drain_s", 10.0),
        seed=seed,
        fleet=fleet,
        timeline=timeline,
        agent=dict(agent),
        limits=limits,
        criteria=criteria,
        observe=top.boolean("observe", True),
    )
    top.reject_unknown()
    return scenario


def _fleet(reader: Reader) -> Fleet:
    devices = reader.integer("devices", 0, minimum=1, maximum=MAX_DEVICES)
    if not reader.has("devices"):
        raise reader.error("devices", "is required")
    client_id = reader.string("client_id", _FLEET.client_id)
    try:
        ids = {client_id.format(index=0), client_id.format(index=1)}
    except (KeyError, IndexError, ValueError) as exc:
        raise reader.error("client_id", f"must use only {{index}}: {exc}") from None
    if len(ids) < 2:
        raise reader.error("client_id", "must contain {index}, so every device has its own id")
    topic = reader.string("topic", _FLEET.topic)
    try:
        topic.format(client_id="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise reader.error("topic", f"may use only {{client_id}}: {exc}") from None
    if "#" in topic or "+" in topic:
        raise reader.error("topic", "must not contain wildcards")
    certificates = reader.optional_string("certificates")
    fleet = Fleet(
        devices=devices,
        client_id=client_id,
        connect_rate_per_s=_rate(reader, "connect_rate_per_s", _FLEET.connect_rate_per_s),
        settle_s=_seconds(reader, "settle_s", _FLEET.settle_s),
        publish_interval_s=_seconds(
            reader, "publish_interval_s", _FLEET.publish_interval_s, minimum=0.01
        ),
        qos=reader.integer("qos", 1, minimum=0, maximum=1),
        topic=topic,
        payload_bytes=reader.integer("payload_bytes", 64, minimum=32, maximum=128 * 1024),
        certificates=Path(certificates) if certificates else None,
    )
    reader.reject_unknown()
    return fleet


def _timeline(top: Reader, duration_s: float) -> tuple[Fault, ...]:
    raw = top.raw("timeline")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.error("timeline", "must be a list of {at_s, fault, ...}")
    faults = []
    for index, entry in enumerate(raw):
        reader = top.item("timeline", index, entry)
        faults.append(_fault(reader, duration_s))
        reader.reject_unknown()
    ordered = tuple(sorted(faults, key=lambda f: f.at_s))
    if ordered != tuple(faults):
        raise top.error("timeline", "must be in order of at_s")
    return ordered


def _fault(reader: Reader, duration_s: float) -> Fault:
    at = _seconds(reader, "at_s", -1.0)
    if not reader.has("at_s"):
        raise reader.error("at_s", "is required")
    if at > duration_s:
        raise reader.error("at_s", f"is after the end of the run (duration_s {duration_s:g})")
    kind = reader.choice("fault", "?", FAULTS)
    region = target = None
    if kind in REGION_FAULTS:
        region = reader.choice("region", "?", REGION_NAMES)
    if kind == "cname":
        target = reader.string("target")
    mode = reader.choice("mode", "timeout", DNS_FAIL_MODES) if kind == "dns-fail" else "timeout"
    fault = Fault(
        at_s=at,
        fault=kind,
        region=region,
        target=target,
        ttl=reader.integer("ttl", 0, minimum=0, maximum=86400) or None if kind == "cname" else None,
        mode=mode,
        on=reader.boolean("on", True) if kind == "jitr" else True,
        delay_s=_seconds(reader, "delay_s", 3.0) if kind == "jitr" else 3.0,
    )
    return fault


def _limits(top: Reader) -> Limits | None:
    raw = top.raw("limits")
    if raw is False:
        return None
    reader = top.section("limits")
    rate_raw = reader.raw("account_connects_per_s")
    rate: float | None
    if rate_raw is None and "account_connects_per_s" in (raw or {}):
        rate = None  # explicitly unlimited
    else:
        rate = _rate(reader, "account_connects_per_s", 500.0)
    limits = Limits(
        account_connects_per_s=rate,
        client_connect_interval_s=_seconds(reader, "client_connect_interval_s", 1.0),
        refuse=reader.choice("refuse", "close", ("close", "not-authorized")),
    )
    reader.reject_unknown()
    return limits


def _criteria(reader: Reader) -> Criteria:
    p99 = reader.raw("rto_p99_max_s")
    duplicated = reader.raw("duplicated_max")
    throttled = reader.raw("throttled_connects_max")
    criteria = Criteria(
        rto_p99_max_s=_seconds(reader, "rto_p99_max_s", 0.0) if p99 is not None else None,
        recovered_min=_finite(reader, "recovered_min", reader.number("recovered_min", 1.0)),
        lost_max=reader.integer("lost_max", 0, minimum=0, maximum=2**62),
        duplicated_max=reader.integer("duplicated_max", 0, minimum=0, maximum=2**62)
        if duplicated is not None
        else None,
        flaps_max=reader.integer("flaps_max", 0, minimum=0, maximum=2**62),
        throttled_connects_max=reader.integer("throttled_connects_max", 0, minimum=0, maximum=2**62)
        if throttled is not None
        else None,
    )
    if criteria.recovered_min > 1:
        raise reader.error("recovered_min", "is a fraction of the fleet, 0..1")
    reader.reject_unknown()
    return criteria


_PLACEHOLDER_TLS = {"ca_file": "ca.pem", "cert_file": "device.pem", "key_file": "device.key"}


def device_settings(
    overrides: Mapping[str, Any], *, base: Mapping[str, Any], source: str
) -> Settings:
    """The agent settings every device starts from: `base` (the testbed's
    agent.yaml, or nothing) with the scenario's `agent:` overrides, validated
    by the agent's own parser, so defaults are the daemon's."""
    merged = _merge(base, overrides)
    merged.setdefault("client_id", "iotdr-sim")
    merged.setdefault("tls", _PLACEHOLDER_TLS)
    if "endpoints" not in merged and "dns" not in merged:
        merged["endpoints"] = {"primary": {"host": "placeholder-ats.iot.region-a.example"}}
    try:
        return parse_settings(merged, source)
    except ConfigError as exc:
        raise ConfigError(source, f"agent.{exc.key}", exc.problem) from None


def for_device(settings: Settings, client_id: str, tls: TlsSettings) -> Settings:
    """One device's settings: the fleet's, with its own identity
    (`Settings.with_identity` says why it is not `dataclasses.replace`)."""
    return settings.with_identity(client_id, tls)


def device_tls(certificates: Path, client_id: str) -> TlsSettings:
    """A device's files in a certificates directory: ID.pem, ID.key, ca.pem."""
    return TlsSettings(
        ca_file=str(certificates / "ca.pem"),
        cert_file=str(certificates / f"{client_id}.pem"),
        key_file=str(certificates / f"{client_id}.key"),
    )
