"""The world a virtual fleet lives in: regions, their CONNECT quotas, DNS (pure).

Each part answers what the testbed would answer, after as long as the
testbed takes; the figures (`WorldModel`) were measured on the testbed and
are documented, with how they were measured, in `simulator/WORLD_MODEL.md`.
Nothing here decides for a device: devices decide in their own cores, and
the virtual runner only asks the world what happens to what they do.

- `ConnectQuota` is `testbed/connect_limits.c` line by line: a token bucket
  of `account_connects_per_s` tokens holding one second's worth, refilled on
  a millisecond clock, one token per accepted CONNECT; a CONNECT less than
  `client_connect_interval_s` after the previous CONNECT of the same client
  id, accepted or not, is refused first (AWS IoT: 1 CONNECT/s per client id).
  A restarted region's broker loads the plugin afresh (full bucket, no ids).
- `DnsModel` is `simulator/shared_dns.py` on the authoritative records: one
  caching resolver for the whole fleet, one query per TTL, the remaining TTL
  in each answer, coalesced queries, failures not cached.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from iotdr.agent.core.events import DnsFailure

ACCEPTED: Final = 0
REFUSED_ACCOUNT: Final = 1
REFUSED_CLIENT: Final = 2


@dataclass(frozen=True, slots=True)
class Latency:
    """An empirical distribution: values at evenly spaced quantiles 0..1,
    sampled by inverse CDF with linear interpolation."""

    quantiles: tuple[float, ...]

    def sample(self, u: float) -> float:
        q = self.quantiles
        if len(q) == 1:
            return q[0]
        x = u * (len(q) - 1)
        i = min(int(x), len(q) - 2)
        return q[i] + (q[i + 1] - q[i]) * (x - i)

    @property
    def median(self) -> float:
        return self.sample(0.5)

    @classmethod
    def fixed(cls, value: float) -> Latency:
        return cls((value,))

    @classmethod
    def measured(cls, samples: Sequence[float], points: int = 21) -> Latency:
        ordered = sorted(samples)
        if not ordered:
            raise ValueError("no samples")
        picks = [ordered[round(i * (len(ordered) - 1) / (points - 1))] for i in range(points)]
        return cls(tuple(round(p, 6) for p in picks))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldModel:
    """How long the testbed takes to answer; see WORLD_MODEL.md for each."""

    # Connect issued -> MQTT CONNECT at the broker (TCP + mutual TLS), unloaded,
    # beyond the handshake's own `handshake_service_s`: what a CONNECT the
    # broker refuses takes, Connect to the close noticed at the device.
    handshake_s: Latency
    # The testbed's handshake throughput: one machine's CPUs do every
    # device's TLS (the CRT's client side and the brokers' server side), so
    # handshakes queue for this long each (0: unlimited, as for real devices
    # each with its own CPU against AWS IoT).
    handshake_service_s: float
    # CONNECT at the broker -> CONNACK at the device. A refusal's close (the
    # quota's, a JITR hang-up, a region killed mid-handshake) is noticed at
    # once: its way back is in `handshake_s`.
    connack_s: float
    # Connect to a killed region -> connection refused at the device.
    refused_s: Latency
    # Region killed -> each established connection reported lost.
    kill_notice_s: Latency
    # CONNACK -> first PUBACK of the backlog, and PUBLISH -> PUBACK.
    first_ack_s: Latency
    # The CRT reports an unacknowledged publish this long after the
    # agent's ack_timeout_s.
    ack_timeout_extra_s: Latency
    # TCP / TLS probe of a healthy region, unloaded.
    probe_tcp_s: float
    probe_tls_s: float
    # The testbed's TLS throughput spent on a TLS probe: probes queue for it
    # with the CONNECTs' handshakes (`handshake_service_s`), this long each
    # (0: unlimited, as against AWS IoT).
    probe_tls_service_s: float = 0.0
    # One query (CNAME, then TXT) to the authoritative server.
    dns_query_s: float
    # The fleet resolver's timeout (SharedDns): a dropped query fails after it.
    dns_timeout_s: float = 2.0
    # The testbed's CNAME and TXT TTL (Testbed.up's default).
    cname_ttl_s: float = 5.0
    # Answer from the shared cache.
    dns_cached_s: float = 0.0001


# Measured on the testbed (see WORLD_MODEL.md; bench/world_latencies.py).
TESTBED = WorldModel(
    # Connect -> refusal noticed, less handshake_service_s: 747 quota
    # refusals in three 1,000-device blackhole validation runs (20/s).
    handshake_s=Latency(
        (0.0387, 0.0411, 0.0420, 0.0428, 0.0436, 0.0442, 0.0451, 0.0463, 0.0481, 0.0515, 0.2131)
    ),
    handshake_service_s=0.005,
    # Connect -> CONNACK (5,749 connections, same runs) minus Connect ->
    # refusal, medians: 90.5 - 49.2 ms.
    connack_s=0.041,
    refused_s=Latency((0.0002, 0.0005, 0.001)),
    kill_notice_s=Latency(
        (0.0005, 0.020, 0.035, 0.059, 0.094, 0.099, 0.150, 0.158, 0.179, 0.208, 0.390)
    ),
    first_ack_s=Latency(
        (0.0003, 0.0011, 0.0029, 0.0063, 0.0121, 0.0237, 0.034, 0.0525, 0.0697, 0.1071, 0.2616)
    ),
    ack_timeout_extra_s=Latency.fixed(0.01),
    probe_tcp_s=0.0005,
    probe_tls_s=0.005,
    # 396 to 481 TLS probes a second through the real runner's prober, in
    # bursts of 2,000 at one region, 8 to 128 probe threads alike.
    probe_tls_service_s=0.0022,
    dns_query_s=0.001,
)


def without_testbed_limits(model: WorldModel) -> WorldModel:
    """The testbed's latencies, without its one-machine handshake throughput:
    a fleet of real devices against AWS IoT, where only the quotas limit."""
    return replace(model, handshake_service_s=0.0, probe_tls_service_s=0.0)


class ConnectQuota:
    """One region's CONNECT limits, as testbed/connect_limits.c applies them."""

    __slots__ = ("_interval_ms", "_last_ms", "_rate", "_refilled_ms", "_tokens")

    def __init__(self, rate: float | None, client_interval_s: float, now: float) -> None:
        self._rate = rate or 0.0
        self._interval_ms = round(client_interval_s * 1000)
        # Each client's last CONNECT (ms), by client number (a fleet's
        # devices are numbered densely): 8 bytes a client, not a dict entry.
        self._last_ms = array("q")
        self._tokens = self._rate
        self._refilled_ms = _ms(now)

    def admit(self, client: int, now: float) -> int:
        """ACCEPTED, REFUSED_CLIENT or REFUSED_ACCOUNT for a CONNECT now;
        `client` is a number from 0."""
        now_ms = _ms(now)
        if self._interval_ms > 0:
            last_ms = self._last_ms
            if client >= len(last_ms):
                grow = max(client + 1, 2 * len(last_ms)) - len(last_ms)
                last_ms.extend(array("q", [_NEVER]) * grow)
            last = last_ms[client]
            last_ms[client] = now_ms
            if last != _NEVER and now_ms - last < self._interval_ms:
                return REFUSED_CLIENT
        if self._rate <= 0:
            return ACCEPTED
        self._tokens += (now_ms - self._refilled_ms) * self._rate / 1000.0
        self._tokens = min(self._tokens, self._rate)
        self._refilled_ms = now_ms
        if self._tokens < 1.0:
            return REFUSED_ACCOUNT
        self._tokens -= 1.0
        return ACCEPTED


_NEVER: Final = -(2**62)  # no CONNECT yet


def _ms(t: float) -> int:
    return math.floor(t * 1000)


@dataclass(slots=True)
class Region:
    """One region's state and what it counted."""

    name: str
    host: str
    rate: float | None
    client_interval_s: float
    limited: bool  # the scenario gives the region CONNECT limits
    quota: ConnectQuota | None = None
    killed: bool = False
    blackholed: bool = False
    jitr: bool = False
    jitr_delay_s: float = 3.0
    first_seen: dict[int, float] = field(default_factory=dict)  # JITR registry, by device
    connected: int = 0  # devices connected now (which ones: VirtualDevice.region)
    # second -> [accepted, refused (either rule), refused by the client-id rule]
    seconds: dict[int, list[int]] = field(default_factory=dict)

    def restart(self, now: float) -> None:
        """mosquitto started again: the plugin starts with a full bucket."""
        if self.limited:
            self.quota = ConnectQuota(self.rate, self.client_interval_s, now)

    def admit(self, client: int, now: float, second: int) -> int:
        if self.quota is None:
            return ACCEPTED
        verdict = self.quota.admit(client, now)
        counts = self.seconds.get(second)
        if counts is None:
            counts = self.seconds[second] = [0, 0, 0]
        if verdict == ACCEPTED:
            counts[0] += 1
        else:
            counts[1] += 1
            if verdict == REFUSED_CLIENT:
                counts[2] += 1
        return verdict

    def registered(self, device: int, now: float) -> bool:
        """JITR: has this device's certificate been registered by now?"""
        first = self.first_seen.setdefault(device, now)
        return now - first >= self.jitr_delay_s


@dataclass(frozen=True, slots=True)
class DnsResult:
    """What a query returned: an answer valid until `expires_at`, or a failure."""

    target: str | None
    txt: str | None
    expires_at: float
    failure: DnsFailure | None = None


_FAIL_KINDS: Final = {
    "servfail": DnsFailure.SERVFAIL,
    "refused": DnsFailure.SERVFAIL,  # dnspython: no nameserver answered
    "nxdomain": DnsFailure.NXDOMAIN,
    "timeout": DnsFailure.TIMEOUT,
}


class DnsModel:
    """The authoritative CNAME and TXT behind the fleet's one caching resolver."""

    def __init__(self, target: str, txt: str, ttl_s: float, model: WorldModel) -> None:
        self.target = target
        self.txt = txt
        self.ttl_s = ttl_s
        self.failing: str | None = None
        self.queries = 0
        self._model = model
        self._cache: DnsResult | None = None
        self._pending: tuple[float, DnsResult] | None = None

    def resolve(self, now: float) -> tuple[float, DnsResult]:
        """When the asking device gets its answer, and the answer."""
        pending = self._pending
        if pending is not None and pending[0] > now:
            return pending  # a query is on its way: its answer serves everyone
        cached = self._cache
        if cached is not None and cached.expires_at > now:
            return now + self._model.dns_cached_s, cached
        self.queries += 1
        query = self._model.dns_query_s
        if self.failing == "timeout":
            done = now + self._model.dns_timeout_s
            result = DnsResult(None, None, done, _FAIL_KINDS["timeout"])
        elif self.failing is not None:
            done = now + query
            result = DnsResult(None, None, done, _FAIL_KINDS[self.failing])
        else:
            # SharedDns stamps the expiry after the CNAME answer, then asks TXT.
            done = now + 2 * query
            result = DnsResult(self.target, self.txt, now + query + self.ttl_s)
            self._cache = result
        self._pending = (done, result)
        return done, result
