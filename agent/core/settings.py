"""The agent's configuration model and its validation (pure: no file I/O).

A configuration is a nested mapping (merged from YAML layers by
`config_files`). `parse_settings` turns it into frozen dataclasses or raises
`ConfigError` naming the file, the dotted key and what is wrong, so an
operator can fix a broken `/etc/iotdr/agent.yaml` without reading code.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from iotdr.agent.core.aws_limits import limit_violation
from iotdr.agent.core.bridge_settings import BridgeSettings, parse_bridge
from iotdr.agent.core.errors import ConfigError, one_line

T = TypeVar("T")

# AWS IoT Core accepts MQTT keep alive values from 30 to 1200 seconds.
AWS_MIN_KEEPALIVE_S = 30
AWS_MAX_KEEPALIVE_S = 1200
# AWS IoT Core: at most one CONNECT per second per client id.
AWS_MIN_CONNECT_INTERVAL_S = 1.0
# AWS IoT: a persistent session lasts at most 7 days.
AWS_MAX_SESSION_EXPIRY_S = 7 * 24 * 3600
# AWS IoT: a client id is 1-128 bytes of UTF-8 and cannot start with "$".
AWS_MAX_CLIENT_ID_BYTES = 128
# A Unix socket path must fit sun_path (108 bytes with the final NUL).
MAX_SOCKET_PATH_BYTES = 107
# Every duration is finite and at most a day: NaN or infinity in a timer
# would stall the agent, and no setting here needs longer.
MAX_SECONDS = 86_400.0
DEFAULT_CONTROL_SOCKET = "/run/iotdr/agent.sock"
DEFAULT_STATE_DIR = "/var/lib/iotdr"


def shown(value: Any) -> str:
    """A value quoted in an error message, cut short."""
    text = repr(value) if not isinstance(value, list | dict) else type(value).__name__
    return one_line(text, 60)


class ProbeDepth(enum.Enum):
    """How deep a failback probe checks the preferred endpoint."""

    TCP = "tcp"
    TLS = "tls"
    MQTT = "mqtt"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSettings:
    host: str
    port: int = 8883


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsSettings:
    name: str | None = None
    txt_name: str | None = None
    nameserver: str | None = None
    port: int = 53
    timeout_s: float = 2.0
    min_ttl_s: float = 1.0
    max_ttl_s: float = 300.0
    retry_s: float = 5.0
    allowlist: tuple[str, ...] = ("*-ats.iot.*.amazonaws.com",)
    # After following a CNAME move, no other DNS move for this long; each
    # change of the CNAME within the hold doubles it (up to the maximum), so
    # a flapping CNAME cannot make the agent flap (as failback's window).
    move_hold_s: float = 5.0
    max_move_hold_s: float = 300.0

    @property
    def txt_record(self) -> str | None:
        """The TXT name: explicit, or the CNAME with a leading underscore."""
        if self.txt_name is not None:
            return self.txt_name
        return f"_{self.name}" if self.name else None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProxy:
    """An HTTP proxy the cloud connection tunnels through (CONNECT)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"


def parse_http_proxy(url: str) -> HttpProxy:
    """`http://host:port` (a trailing slash allowed); ValueError says why not."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() != "http":
        raise ValueError(f"must look like http://host:port, got {url!r}")
    host, colon, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not colon or not host or "/" in host or "@" in host or not port.isdigit():
        raise ValueError(f"must look like http://host:port, got {url!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {url!r}")
    return HttpProxy(host=host, port=int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenAddress:
    """An IP address and TCP port to serve on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`127.0.0.1:9101` or `[::1]:9101`; ValueError says why not. An IP
    address, not a name: the daemon binds it before DNS is of any use."""
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"must be IP:PORT (e.g. 127.0.0.1:9101), got {text!r}") from None
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be IP:PORT with a port from 1 to 65535, got {text!r}")
    return ListenAddress(host=host, port=int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    # Serve Prometheus text on GET /metrics here; None (the default): no port.
    listen: ListenAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSettings:
    # Corporate networks: tunnel MQTT through this proxy (HTTP CONNECT).
    http_proxy: HttpProxy | None = None
    keepalive_s: int = AWS_MIN_KEEPALIVE_S
    ping_timeout_s: float = 3.0
    connect_timeout_s: float = 3.0
    connack_timeout_s: float = 5.0
    # A whole attempt (TCP, TLS, CONNECT/CONNACK) gets this long. s2n-tls
    # delays reporting some handshake failures by 10-30 s ("blinding"), so
    # the core abandons an attempt that has not answered by then.
    attempt_timeout_s: float = 6.0
    ack_timeout_s: float = 3.0
    tcp_keepalive_idle_s: int = 2
    tcp_keepalive_interval_s: int = 1
    tcp_keepalive_probes: int = 3
    min_connect_interval_s: float = AWS_MIN_CONNECT_INTERVAL_S
    connect_spread_s: float = 0.5
    # A persistent session in each region: commands (QoS 1) published while
    # the connection is down wait for it, as AWS IoT keeps them for a
    # persistent session (up to 7 days; AWS's default 1 h is 3600 here).
    # 0, the default: a clean session. Opt-in until an intermittent loss of
    # forwarded telemetry seen on the testbed with a session resumed in a
    # region restored from an old save is understood (issue 12 note).
    session_expiry_s: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffSettings:
    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FailbackSettings:
    enabled: bool = True
    probe_depth: ProbeDepth = ProbeDepth.TLS
    probe_interval_s: float = 5.0
    probe_timeout_s: float = 3.0
    stability_window_s: float = 10.0
    stability_probe_interval_s: float = 1.0
    max_stability_window_s: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class JitrSettings:
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 2.0, 3.0, 5.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatSettings:
    topic: str | None = None
    interval_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    client_id: str
    tls: TlsSettings
    primary: EndpointSettings | None = None
    secondary: EndpointSettings | None = None
    dns: DnsSettings = field(default_factory=DnsSettings)
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    failback: FailbackSettings = field(default_factory=FailbackSettings)
    jitr: JitrSettings = field(default_factory=JitrSettings)
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    control_socket: str = DEFAULT_CONTROL_SOCKET
    state_dir: str = DEFAULT_STATE_DIR
    log_level: str = "info"

    # Written out so that mypyc compiles it (events.py says why); a section
    # left out (or None) is its defaults, as `default_factory` says above.
    def __init__(
        self,
        *,
        client_id: str,
        tls: TlsSettings,
        primary: EndpointSettings | None = None,
        secondary: EndpointSettings | None = None,
        dns: DnsSettings | None = None,
        connection: ConnectionSettings | None = None,
        backoff: BackoffSettings | None = None,
        failback: FailbackSettings | None = None,
        jitr: JitrSettings | None = None,
        heartbeat: HeartbeatSettings | None = None,
        bridge: BridgeSettings | None = None,
        metrics: MetricsSettings | None = None,
        control_socket: str = DEFAULT_CONTROL_SOCKET,
        state_dir: str = DEFAULT_STATE_DIR,
        log_level: str = "info",
    ) -> None:
        object.__setattr__(self, "client_id", client_id)
        object.__setattr__(self, "tls", tls)
        object.__setattr__(self, "primary", primary)
        object.__setattr__(self, "secondary", secondary)
        object.__setattr__(self, "dns", DnsSettings() if dns is None else dns)
        object.__setattr__(
            self, "connection", ConnectionSettings() if connection is None else connection
        )
        object.__setattr__(self, "backoff", BackoffSettings() if backoff is None else backoff)
        object.__setattr__(self, "failback", FailbackSettings() if failback is None else failback)
        object.__setattr__(self, "jitr", JitrSettings() if jitr is None else jitr)
        object.__setattr__(
            self, "heartbeat", HeartbeatSettings() if heartbeat is None else heartbeat
        )
        object.__setattr__(self, "bridge", BridgeSettings() if bridge is None else bridge)
        object.__setattr__(self, "metrics", MetricsSettings() if metrics is None else metrics)
        object.__setattr__(self, "control_socket", control_socket)
        object.__setattr__(self, "state_dir", state_dir)
        object.__setattr__(self, "log_level", log_level)

    def with_identity(self, client_id: str, tls: TlsSettings) -> Settings:
        """These settings for another client: `dataclasses.replace(self,
        client_id=..., tls=...)`, as a simulated fleet makes one per device.
        Compiled, this is a direct call; `replace` goes through keyword
        arguments, which mypyc parses at some 12,000 instructions for
        fifteen of them."""
        return Settings(
            client_id=client_id,
            tls=tls,
            primary=self.primary,
            secondary=self.secondary,
            dns=self.dns,
            connection=self.connection,
            backoff=self.backoff,
            failback=self.failback,
            jitr=self.jitr,
            heartbeat=self.heartbeat,
            bridge=self.bridge,
            metrics=self.metrics,
            control_socket=self.control_socket,
            state_dir=self.state_dir,
            log_level=self.log_level,
        )


LOG_LEVELS = ("debug", "info", "warning", "error")


class _Reader:
    """Reads typed values out of one mapping, naming the key on error."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str) -> None:
        self._data = data
        self._source = source
        self._prefix = prefix
        self._used: set[str] = set()

    def key(self, name: object) -> str:
        return f"{self._prefix}{name}"

    def error(self, name: object, problem: str) -> ConfigError:
        return ConfigError(self._source, self.key(name), problem)

    def raw(self, name: str) -> Any:
        self._used.add(name)
        return self._data.get(name)

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def item(self, name: str, index: int, value: Any) -> _Reader:
        """A mapping inside a list, e.g. bridge.to_cloud[2]."""
        if not isinstance(value, Mapping):
            raise ConfigError(
                self._source,
                f"{self.key(name)}[{index}]",
                f"must be a mapping, got {type(value).__name__}",
            )
        return _Reader(value, self._source, f"{self.key(name)}[{index}].")

    def section(self, name: str) -> _Reader:
        value = self.raw(name)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.error(name, f"must be a mapping, got {type(value).__name__}")
        return _Reader(value, self._source, f"{self.key(name)}.")

    def string(self, name: str, default: str | None = None) -> str:
        value = self.optional_string(name)
        if value is None:
            if default is None:
                raise self.error(name, "is required")
            return default
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"must be a non-empty string, got {shown(value)}")
        if "\0" in value:  # no file, host or topic name holds NUL
            raise self.error(name, "must not hold a NUL character")
        return value

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float = MAX_SECONDS
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value}")
        if value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {shown(value)}")
        if value > maximum:
            raise self.error(name, f"must be at most {maximum:g}, got {shown(value)}")
        return float(value)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be a whole number, got {shown(value)}")
        if not minimum <= value <= maximum:
            raise self.error(name, f"must be between {minimum} and {maximum}, got {shown(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {shown(value)}")
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.string(name, default).lower()
        if value not in options:
            raise self.error(name, f"must be one of {', '.join(options)}, got {shown(value)}")
        return value

    def list_of(self, name: str, default: tuple[T, ...], item: Callable[[Any], T]) -> tuple[T, ...]:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            raise self.error(name, f"must be a non-empty list, got {shown(value)}")
        try:
            return tuple(item(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise self.error(name, f"has a bad entry: {exc}") from None

    def reject_unknown(self) -> None:
        # Keys may be anything YAML allows (numbers, null, dates): sort as text.
        unknown = sorted((k for k in self._data if k not in self._used), key=str)
        if unknown:
            raise self.error(unknown[0], "is not a known setting (misspelt?)")


def _pattern(value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ValueError(f"{shown(value)} is not a host pattern")
    return value


def _delay(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_SECONDS
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ValueError(f"{shown(value)} is not a delay in seconds (0 to {MAX_SECONDS:g})")
    return float(value)


def _client_id(reader: _Reader) -> str:
    value = reader.string("client_id")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > AWS_MAX_CLIENT_ID_BYTES:
        raise reader.error("client_id", f"is {size} bytes; AWS IoT allows 1 to 128")
    if value.startswith("$"):
        raise reader.error("client_id", 'cannot start with "$" (AWS IoT reserves it)')
    if not value.isprintable() or any(c.isspace() for c in value):
        raise reader.error("client_id", "must not hold spaces or control characters")
    return value


def _socket_path(reader: _Reader) -> str:
    value = reader.string("control_socket", DEFAULT_CONTROL_SOCKET)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_SOCKET_PATH_BYTES or "\0" in value:
        raise reader.error(
            "control_socket", f"a Unix socket path is at most {MAX_SOCKET_PATH_BYTES} bytes"
        )
    return value


def _nameserver(reader: _Reader) -> str | None:
    value = reader.optional_string("nameserver")
    if value is not None:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise reader.error("nameserver", f"must be an IP address, got {shown(value)}") from None
    return value


def _heartbeat_topic(reader: _Reader) -> str | None:
    topic = reader.optional_string("topic")
    if topic is not None:
        problem = limit_violation(topic, b"")
        if problem is None and "\0" in topic:
            problem = "a topic cannot hold NUL"
        if problem:
            raise reader.error("topic", problem)
    return topic


def _endpoint(reader: _Reader, name: str) -> EndpointSettings | None:
    if not reader.has(name):
        reader.raw(name)
        return None
    section = reader.section(name)
    endpoint = EndpointSettings(
        host=section.string("host"),
        port=section.integer("port", 8883, minimum=1, maximum=65535),
    )
    section.reject_unknown()
    return endpoint


def _dns(reader: _Reader) -> DnsSettings:
    default = DnsSettings()
    min_ttl = reader.number("min_ttl_s", default.min_ttl_s)
    max_ttl = reader.number("max_ttl_s", default.max_ttl_s, minimum=min_ttl)
    hold = reader.number("move_hold_s", default.move_hold_s)
    return DnsSettings(
        name=reader.optional_string("name"),
        txt_name=reader.optional_string("txt_name"),
        nameserver=_nameserver(reader),
        port=reader.integer("port", default.port, minimum=1, maximum=65535),
        timeout_s=reader.number("timeout_s", default.timeout_s, minimum=0.1),
        min_ttl_s=min_ttl,
        max_ttl_s=max_ttl,
        retry_s=reader.number("retry_s", default.retry_s, minimum=0.1),
        allowlist=reader.list_of("allowlist", default.allowlist, _pattern),
        move_hold_s=hold,
        max_move_hold_s=reader.number(
            "max_move_hold_s", max(default.max_move_hold_s, hold), minimum=hold
        ),
    )


def _metrics(reader: _Reader) -> MetricsSettings:
    listen = reader.optional_string("listen")
    try:
        return MetricsSettings(listen=parse_listen(listen) if listen is not None else None)
    except ValueError as exc:
        raise reader.error("listen", str(exc)) from None


def _connection(reader: _Reader) -> ConnectionSettings:
    d = ConnectionSettings()
    proxy = reader.optional_string("http_proxy")
    try:
        http_proxy = parse_http_proxy(proxy) if proxy is not None else None
    except ValueError as exc:
        raise reader.error("http_proxy", str(exc)) from None
    return ConnectionSettings(
        http_proxy=http_proxy,
        keepalive_s=reader.integer(
            "keepalive_s", d.keepalive_s, minimum=1, maximum=AWS_MAX_KEEPALIVE_S
        ),
        ping_timeout_s=reader.number("ping_timeout_s", d.ping_timeout_s, minimum=0.1),
        connect_timeout_s=reader.number("connect_timeout_s", d.connect_timeout_s, minimum=0.1),
        connack_timeout_s=reader.number("connack_timeout_s", d.connack_timeout_s, minimum=0.1),
        attempt_timeout_s=reader.number("attempt_timeout_s", d.attempt_timeout_s, minimum=1.0),
        ack_timeout_s=reader.number("ack_timeout_s", d.ack_timeout_s, minimum=0.1),
        tcp_keepalive_idle_s=reader.integer(
            "tcp_keepalive_idle_s", d.tcp_keepalive_idle_s, minimum=1, maximum=7200
        ),
        tcp_keepalive_interval_s=reader.integer(
            "tcp_keepalive_interval_s", d.tcp_keepalive_interval_s, minimum=1, maximum=600
        ),
        tcp_keepalive_probes=reader.integer(
            "tcp_keepalive_probes", d.tcp_keepalive_probes, minimum=1, maximum=50
        ),
        min_connect_interval_s=reader.number(
            "min_connect_interval_s", d.min_connect_interval_s, minimum=AWS_MIN_CONNECT_INTERVAL_S
        ),
        connect_spread_s=reader.number("connect_spread_s", d.connect_spread_s),
        session_expiry_s=reader.integer(
            "session_expiry_s", d.session_expiry_s, minimum=0, maximum=AWS_MAX_SESSION_EXPIRY_S
        ),
    )


def _backoff(reader: _Reader) -> BackoffSettings:
    d = BackoffSettings()
    initial = reader.number("initial_s", d.initial_s, minimum=0.1)
    return BackoffSettings(
        initial_s=initial,
        max_s=reader.number("max_s", d.max_s, minimum=initial),
        multiplier=reader.number("multiplier", d.multiplier, minimum=1.0, maximum=10.0),
    )


def _failback(reader: _Reader) -> FailbackSettings:
    d = FailbackSettings()
    window = reader.number("stability_window_s", d.stability_window_s)
    return FailbackSettings(
        enabled=reader.boolean("enabled", d.enabled),
        probe_depth=ProbeDepth(
            reader.choice("probe_depth", d.probe_depth.value, tuple(p.value for p in ProbeDepth))
        ),
        probe_interval_s=reader.number("probe_interval_s", d.probe_interval_s, minimum=0.1),
        probe_timeout_s=reader.number("probe_timeout_s", d.probe_timeout_s, minimum=0.1),
        stability_window_s=window,
        stability_probe_interval_s=reader.number(
            "stability_probe_interval_s", d.stability_probe_interval_s, minimum=0.1
        ),
        max_stability_window_s=reader.number(
            "max_stability_window_s", max(d.max_stability_window_s, window), minimum=window
        ),
    )


def parse_settings(data: Mapping[str, Any], source: str) -> Settings:
    """Validate a merged configuration mapping; `source` names it in errors."""
    top = _Reader(data, source, "")
    endpoints = top.section("endpoints")
    primary = _endpoint(endpoints, "primary")
    secondary = _endpoint(endpoints, "secondary")
    endpoints.reject_unknown()

    tls_reader = top.section("tls")
    tls = TlsSettings(
        ca_file=tls_reader.string("ca_file"),
        cert_file=tls_reader.string("cert_file"),
        key_file=tls_reader.string("key_file"),
    )
    tls_reader.reject_unknown()

    sections: dict[str, Any] = {}
    for name, parse in (
        ("dns", _dns),
        ("connection", _connection),
        ("backoff", _backoff),
        ("failback", _failback),
        ("metrics", _metrics),
    ):
        reader = top.section(name)
        sections[name] = parse(reader)
        reader.reject_unknown()

    jitr_reader = top.section("jitr")
    jitr = JitrSettings(
        retry_delays_s=jitr_reader.list_of("retry_delays_s", JitrSettings().retry_delays_s, _delay)
    )
    jitr_reader.reject_unknown()

    hb_reader = top.section("heartbeat")
    heartbeat = HeartbeatSettings(
        topic=_heartbeat_topic(hb_reader),
        interval_s=hb_reader.number("interval_s", HeartbeatSettings().interval_s, minimum=0.05),
    )
    hb_reader.reject_unknown()

    bridge_reader = top.section("bridge")
    bridge = parse_bridge(bridge_reader)
    bridge_reader.reject_unknown()

    settings = Settings(
        client_id=_client_id(top),
        tls=tls,
        primary=primary,
        secondary=secondary,
        jitr=jitr,
        heartbeat=heartbeat,
        bridge=bridge,
        control_socket=_socket_path(top),
        state_dir=top.string("state_dir", DEFAULT_STATE_DIR),
        log_level=top.choice("log_level", "info", LOG_LEVELS),
        **sections,
    )
    top.reject_unknown()
    if primary is None and settings.dns.name is None:
        raise ConfigError(source, "endpoints.primary", "is required when dns.name is not set")
    return settings


# The reader that names the file and dotted key in every error, for other
# YAML documents validated the same way (the simulator's scenario files).
Reader = _Reader
