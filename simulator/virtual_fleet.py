"""A fleet in virtual time: every device's own core, the world's answers.

Theory of operation
-------------------
Each device is the agent's `Machine`, unchanged, with the scenario's
settings (the daemon's defaults beneath) and its own seeded RNG. The
`VirtualFleet` plays the part `driver.py` plays on real brokers: it feeds a
device's core events stamped with virtual time and carries out the
commands the core returns, asking the world model (`virtual_world`) what
each command meets: a Connect reaches its region after the measured
handshake time, meets the region's CONNECT quota there, and is answered;
an armed timer fires; a Resolve goes through the fleet's shared cache.
Each device's pending work sits in a small heap of its own
(`virtual_clock.FleetQueue`); a run is a pure function of the scenario
and its seed.

Order. The plain order is global: every entry in `(at, device, seq)`
order. Most entries touch only their own device (its core, its record,
its own draws from the world's latencies) and read the world only where
it stays put between faults. Only a few touch what devices share: a
CONNECT meeting the region's account quota (`ARRIVE`, `PROBE_ARRIVE`), a
query of the fleet's caching resolver (`DNS_ASK`), the testbed's queue
of TLS handshakes (`HANDSHAKE`, `PROBE_HANDSHAKE`, `TLS_PROBE`). So a grouped run
(the default) works through one device's entries until the next one that
touches something shared, which waits until it is first in the global
order; faults (and the ramp-up's polls) are barriers everything reaches
first. Every shared thing then sees the same order as in the plain run,
and every device the same answers: `tests/simulator/test_virtual.py`
runs both and compares every record. Grouped, a device's core is visited
once for a stretch of events instead of once per event among a million
others, which is what made large fleets wait on memory.

Devices record what happened as `device.Device` does (each Connect's time;
each connection's region, reason, start, end; failed attempts by kind), in
the same `DeviceRecord`s, so `results.fleet_report` computes the report
exactly as for a real run. Telemetry is not stepped message by message:
what a device's messages did follows from its connections and the
regions' blackholes, and is worked out per device at the end
(`virtual_telemetry`), except that the first unacknowledged publish on a
blackholed connection is fed to the core when it times out, as it is on
real brokers. `tests/simulator/test_virtual.py` shows this gives the same
report as stepping every message.

The phases are those of the real run (`real_run.py`): a ramp-up at
`fleet.connect_rate_per_s`, polled every 0.25 s until the fleet is
connected; telemetry starts; `settle_s`; t=0 and the timeline; then
`drain_s`. A fleet may be split into shards (`shard`, `shards`): shard k
runs devices k, k+K, ... with 1/K of each region's account quota.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from iotdr.agent.core.commands import (
    ArmTimer,
    CancelTimer,
    Connect,
    Disconnect,
    Probe,
    Resolve,
    Why,
)
from iotdr.agent.core.endpoints import Endpoint
from iotdr.agent.core.events import (
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    DnsAnswered,
    DnsFailed,
    Event,
    ProbeCompleted,
    PublishFailed,
    Started,
    TimerFired,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import Machine, State
from iotdr.agent.core.settings import ProbeDepth, Settings, TlsSettings
from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.draws import device_draws
from iotdr.simulator.scenario import Fault, Scenario, for_device
from iotdr.simulator.virtual_clock import TIMER_INDEX, TIMERS, Entry, FleetQueue
from iotdr.simulator.virtual_device import VirtualDevice
from iotdr.simulator.virtual_rng import SplitMix64
from iotdr.simulator.virtual_world import (
    ACCEPTED,
    DnsModel,
    DnsResult,
    Region,
    WorldModel,
)

# Kinds of a device's entries (at, seq, kind, a, b). From SHARED on, the
# entry touches what devices share, and waits for its turn in global order.
# (Each constant is Final: compiled, a C constant instead of a lookup of
# the module's globals by name, several on every event.)
START: Final = 0
TIMER: Final = 1
RESULT: Final = 2
LOST: Final = 3
PUBFAIL: Final = 4
DNS: Final = 5
PROBE: Final = 6
SHARED: Final = 7
ARRIVE: Final = 7
PROBE_ARRIVE: Final = 8
DNS_ASK: Final = 9
HANDSHAKE: Final = 10
PROBE_HANDSHAKE: Final = 11
TLS_PROBE: Final = 12
WORLD_SALT: Final = 0x5DEECE66D1B3A7F5  # a device's world draws: its core seed, salted

FAILURES: Final[tuple[FailureKind, ...]] = tuple(FailureKind)
# 0: success / healthy
FAILURE_CODE: Final = {kind: i + 1 for i, kind in enumerate(FAILURES)}
WHYS: Final[tuple[Why, ...]] = tuple(Why)
WHY_INDEX: Final = {why: i for i, why in enumerate(WHYS)}
# Their names as records keep them (an enum's `.value` runs interpreted).
WHY_NAMES: Final[tuple[str, ...]] = tuple(why.value for why in WHYS)
FAILURE_NAMES: Final[tuple[str, ...]] = tuple(kind.value for kind in FAILURES)
# What the CRT names each failure (the `detail` the real driver passes on).
_DETAIL: Final = {
    FailureKind.REFUSED: "AWS_IO_SOCKET_CONNECTION_REFUSED",
    FailureKind.TIMEOUT: "AWS_IO_SOCKET_TIMEOUT",
    FailureKind.JITR_HANGUP: "AWS_ERROR_MQTT_UNEXPECTED_HANGUP",
    FailureKind.CLOSED: "AWS_IO_SOCKET_CLOSED",
    FailureKind.AUTH: "AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED",
    FailureKind.RESOLVE: "AWS_IO_DNS_NO_ADDRESS_FOR_HOST",
}
_NONE: Final[set[int]] = set()  # never added to: see VirtualFleet.__init__
_KNOWN_ENDPOINTS: Final = 16
POLL_S: Final = 0.25  # the real run polls the ramp-up this often
RAMP_GRACE_S: Final = 30.0
PLACEHOLDER_TLS = TlsSettings(ca_file="ca.pem", cert_file="device.pem", key_file="device.key")


@dataclass(frozen=True, slots=True)
class Regions:
    """The two regions' names and endpoint hosts, and the initial DNS."""

    primary: str
    secondary: str
    primary_host: str
    secondary_host: str
    txt: str

    def role_to_region(self) -> dict[str, str]:
        return {"primary": self.primary, "secondary": self.secondary}


class VirtualFleet:
    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        regions: Regions,
        model: WorldModel,
        *,
        shard: int = 0,
        shards: int = 1,
        keep_events: bool = False,
        grouped: bool = True,
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.shard, self.shards = shard, shards
        self.total = scenario.fleet.devices
        self.indices = range(shard, self.total, shards)
        n = len(self.indices)
        self.grouped = grouped
        self.queue = FleetQueue(n)
        # The shard's own draws (finish_records' ack latencies, in device order).
        self._rng = random.Random(scenario.seed * 1_000_003 + shard)
        # Only this shard's client ids (Fleet.client_ids would format the
        # whole fleet's, in every shard).
        client_id_format = scenario.fleet.client_id
        self.machines: list[Machine] = []
        self.devices: list[VirtualDevice] = []
        self.records: list[DeviceRecord] = []
        # Each device's draws as every engine makes them (draws.py).
        interval = scenario.fleet.publish_interval_s
        self.phase = array("d", [0.0]) * n
        for local, index in enumerate(self.indices):
            client_id = client_id_format.format(index=index)
            device_settings = for_device(settings, client_id, PLACEHOLDER_TLS)
            core_seed, phase = device_draws(scenario.seed, index)
            self.phase[local] = phase * interval
            self.machines.append(Machine(device_settings, SplitMix64(core_seed)))
            # Its draws from the world's latencies are its own, so they do
            # not depend on the order devices are worked through.
            self.devices.append(VirtualDevice(core_seed ^ WORLD_SALT))
            # Which sequences were acknowledged matters only against a cloud
            # observer, which virtual time has not: one shared empty set
            # instead of 216 bytes per device.
            self.records.append(DeviceRecord(client_id=client_id, acknowledged_sequences=_NONE))
        self.connected = 0
        limits = scenario.limits
        rate = None if limits is None else limits.account_connects_per_s
        share = None if rate is None else rate / shards
        interval = 1.0 if limits is None else limits.client_connect_interval_s
        self.refuse_kind = (
            FailureKind.AUTH
            if limits is not None and limits.refuse == "not-authorized"
            else FailureKind.JITR_HANGUP
        )
        self.regions = [
            Region(regions.primary, regions.primary_host, share, interval, limits is not None),
            Region(regions.secondary, regions.secondary_host, share, interval, limits is not None),
        ]
        for region in self.regions:
            region.restart(0.0)
        self.role_to_region = regions.role_to_region()
        self.dns = DnsModel(regions.primary_host, regions.txt, model.cname_ttl_s, model)
        self._dns_results: list[DnsResult] = []
        self._endpoints: list[Endpoint] = []
        self._endpoint_index: dict[Endpoint, int] = {}
        self._endpoint_region: list[int] = []
        self._known_endpoints: list[Endpoint] = []  # objects seen, for `is`
        self._known_ids: list[int] = []
        self.t_telemetry: float | None = None
        self.t0: float | None = None
        self.t_stop = math.inf
        self.applied: list[tuple[float, Fault]] = []
        self._faults: list[tuple[float, int]] = []  # (when, timeline index), in order
        self._next_fault = 0
        self.blackholes: list[list[tuple[float, float]]] = [[], []]
        self.events = 0
        # Every event each core was fed, for tests that replay them.
        self.event_log: list[list[Event]] | None = [[] for _ in range(n)] if keep_events else None
        self._handshakes_free_at = 0.0
        connection = settings.connection
        self._connect_timeout_s = connection.connect_timeout_s
        self._connack_timeout_s = connection.connack_timeout_s
        self._ack_timeout_s = connection.ack_timeout_s
        self._keepalive_s = float(connection.keepalive_s)
        self._ping_timeout_s = connection.ping_timeout_s
        self._probe_timeout_s = settings.failback.probe_timeout_s

    # ------------------------------------------------------------ phases

    def ramp_up(self, on_progress: Callable[[], None] | None = None) -> float:
        """Starts every device at the fleet's connect rate; returns the
        first poll at which all of this shard's devices are connected."""
        rate = self.scenario.fleet.connect_rate_per_s
        queue = self.queue
        for local, index in enumerate(self.indices):
            queue.push(local, index / rate, START)
        deadline = self.total / rate + RAMP_GRACE_S
        t = 0.0
        while True:
            self.run_until(t, on_progress)
            if self.connected == len(self.indices) or t >= deadline:
                return t
            t += POLL_S

    def start_timeline(self, t_telemetry: float) -> None:
        """Telemetry from `t_telemetry` (each device at its own phase), t=0
        after `settle_s`, the faults at their times, the end after drain."""
        scenario = self.scenario
        self.run_until(t_telemetry)
        self.t_telemetry = t_telemetry
        t0 = self.t0 = t_telemetry + scenario.fleet.settle_s
        self.t_stop = t0 + scenario.duration_s
        self._faults = sorted((t0 + fault.at_s, i) for i, fault in enumerate(scenario.timeline))

    def finish(self, on_progress: Callable[[], None] | None = None) -> None:
        assert self.t0 is not None
        self.run_until(self.t0 + self.scenario.duration_s + self.scenario.drain_s, on_progress)

    # --------------------------------------------------------- the loop

    def run_until(self, end: float, on_progress: Callable[[], None] | None = None) -> None:
        """Works through everything due by `end`: each fault due by then
        is a barrier, applied once everything before it is done."""
        faults = self._faults
        while self._next_fault < len(faults) and faults[self._next_fault][0] <= end:
            at, index = faults[self._next_fault]
            self._next_fault += 1
            self._run(at, True, on_progress)
            self._fault(at, index)
        self._run(end, False, on_progress)
        self.queue.now = max(self.queue.now, end)

    def _run(self, bound: float, before: bool, on_progress: Callable[[], None] | None) -> None:
        """Everything due by `bound` (before `bound` if `before`)."""
        queue = self.queue
        wakes, local, grouped = queue.wakes, queue.local, self.grouped
        while True:
            at, device = wakes.first()
            if device < 0 or at > bound or (before and at >= bound):
                break
            wakes.pop()
            entries = local[device]  # latest first: the earliest is last
            if len(entries) == 1 or entries[-1].at != at:  # [0]: FleetQueue's end mark
                continue  # a stale wake-up: a later push overtook it
            queue.now = at
            queue.visits += 1
            queue.active = device
            entry = entries.pop()
            while True:
                self._dispatch(device, entry)
                queue.popped += 1
                if on_progress is not None and queue.popped % 200_000 == 0:
                    on_progress()
                if len(entries) == 1:
                    break
                entry = entries[-1]
                t = entry.at
                if t > bound or (before and t >= bound):
                    break
                if not grouped or entry.kind >= SHARED:
                    first_at, first_device = wakes.first()
                    if first_device >= 0 and (
                        t > first_at or (t == first_at and device > first_device)
                    ):
                        break  # another device's work comes first
                entries.pop()
            queue.active = -1
            if len(entries) > 1:
                wakes.push(entries[-1].at, device)

    def _dispatch(self, device: int, entry: Entry) -> None:
        at, seq, kind, a, b = entry.at, entry.seq, entry.kind, entry.a, entry.b
        # Most frequent first. (A table of methods in the class body does
        # not compile with mypyc: `compiled_build`.)
        if kind == TIMER:
            self._timer(at, seq, device, a, b)
        elif kind == PROBE:
            self._probe_done(at, seq, device, a, b)
        elif kind == RESULT:
            self._result(at, seq, device, a, b)
        elif kind == DNS:
            self._dns(at, seq, device, a, b)
        elif kind == ARRIVE:
            self._arrive(at, seq, device, a, b)
        elif kind == DNS_ASK:
            self._dns_ask(at, seq, device, a, b)
        elif kind == START:
            self._start(at, seq, device, a, b)
        elif kind == LOST:
            self._lost(at, seq, device, a, b)
        elif kind == PUBFAIL:
            self._publish_failed(at, seq, device, a, b)
        elif kind == PROBE_ARRIVE:
            self._probe_arrive(at, seq, device, a, b)
        elif kind == HANDSHAKE:
            self._handshake(at, seq, device, a, b)
        elif kind == PROBE_HANDSHAKE:
            self._probe_handshake(at, seq, device, a, b)
        elif kind == TLS_PROBE:
            self._tls_probe(at, seq, device, a, b)

    def _feed(self, device: int, event: Event) -> None:
        self.events += 1
        if self.event_log is not None:
            self.event_log[device].append(event)
        for command in self.machines[device].handle(event):
            kind = type(command)
            if kind is ArmTimer:
                assert isinstance(command, ArmTimer)
                index = TIMER_INDEX[command.timer]
                self.queue.remove(device, TIMER, index)  # the arming it replaces
                self.queue.push(device, command.at, TIMER, index)
            elif kind is CancelTimer:
                assert isinstance(command, CancelTimer)
                self.queue.remove(device, TIMER, TIMER_INDEX[command.timer])
            elif kind is Connect:
                assert isinstance(command, Connect)
                self._connect(device, command, event.now)
            elif kind is Disconnect:
                assert isinstance(command, Disconnect)
                state = self.devices[device]
                if state.attempt == command.attempt:
                    state.attempt = 0
                self._end(device, command.attempt, event.now)
            elif kind is Resolve:  # the fleet's resolver is shared: in turn
                self.queue.push(device, event.now, DNS_ASK)
            elif kind is Probe:
                assert isinstance(command, Probe)
                self._probe(device, command, event.now)
            # Report: the log; PublishHeartbeat: the sim's devices have no
            # heartbeat topic (telemetry carries the same signal).

    def _dns_index(self, result: DnsResult) -> int:
        results = self._dns_results
        if not results or results[-1] is not result:
            results.append(result)
        return len(results) - 1

    def _endpoint_id(self, endpoint: Endpoint) -> int:
        # The cores share their endpoint objects (endpoints.endpoint_at), so
        # the few known ones are found by identity, without hashing.
        known = self._known_endpoints
        for i in range(len(known)):
            if known[i] is endpoint:
                return self._known_ids[i]
        index = self._endpoint_index.get(endpoint)
        if index is None:
            index = len(self._endpoints)
            self._endpoints.append(endpoint)
            self._endpoint_index[endpoint] = index
            self._endpoint_region.append(
                next((i for i, r in enumerate(self.regions) if r.host == endpoint.host), -1)
            )
        if len(known) < _KNOWN_ENDPOINTS:  # kept alive, so `is` stays meaningful
            known.append(endpoint)
            self._known_ids.append(index)
        return index

    # --------------------------------------------------------- connecting

    def _connect(self, device: int, command: Connect, now: float) -> None:
        self.records[device].attempts.append(now)
        region_index = self._endpoint_region[self._endpoint_id(command.endpoint)]
        attempt = command.attempt
        state = self.devices[device]
        state.attempt = attempt
        state.attempt_region = region_index
        state.attempt_why = WHY_INDEX[command.why]
        queue, model = self.queue, self.model
        if region_index < 0:
            code = FAILURE_CODE[FailureKind.RESOLVE]
            queue.push(device, now + model.dns_query_s, RESULT, attempt, code)
            return
        region = self.regions[region_index]
        if region.killed:
            code = FAILURE_CODE[FailureKind.REFUSED]
            queue.push(
                device,
                now + model.refused_s.sample(self.devices[device].draw()),
                RESULT,
                attempt,
                code,
            )
        elif region.blackholed:  # the SYN vanishes: the CRT's socket connect timeout
            code = FAILURE_CODE[FailureKind.TIMEOUT]
            queue.push(device, now + self._connect_timeout_s, RESULT, attempt, code)
        elif model.handshake_service_s > 0:  # the testbed's shared TLS throughput: in turn
            queue.push(device, now, HANDSHAKE, attempt, region_index)
        else:
            queue.push(device, self._handshake_done(now, device), ARRIVE, attempt, region_index)

    def _handshake(
        self, at: float, _seq: int, device: int, attempt: int, region_index: int
    ) -> None:
        self.queue.push(device, self._handshake_done(at, device), ARRIVE, attempt, region_index)

    def _handshake_done(self, now: float, device: int) -> float:
        """When a handshake started now is through, queueing for the
        testbed's handshake throughput (WorldModel.handshake_service_s)."""
        service = self.model.handshake_service_s
        if service > 0:
            begin = max(now, self._handshakes_free_at)
            self._handshakes_free_at = begin + service
            now = self._handshakes_free_at
        return now + self.model.handshake_s.sample(self.devices[device].draw())

    def _arrive(self, at: float, _seq: int, device: int, attempt: int, region_index: int) -> None:
        """The device's CONNECT reaches the region (after TCP and TLS)."""
        if self.devices[device].attempt != attempt:
            return  # abandoned by the core before it got there
        region = self.regions[region_index]
        queue, connack = self.queue, self.model.connack_s
        # A close (no CONNACK) is noticed at once: WorldModel.connack_s.
        if region.killed:  # died mid-handshake: closed before CONNACK
            queue.push(device, at, RESULT, attempt, FAILURE_CODE[FailureKind.JITR_HANGUP])
        elif region.blackholed:
            code = FAILURE_CODE[FailureKind.TIMEOUT]
            queue.push(device, at + self._connack_timeout_s, RESULT, attempt, code)
        elif region.jitr and not region.registered(device, at):
            queue.push(device, at, RESULT, attempt, FAILURE_CODE[FailureKind.JITR_HANGUP])
        elif region.admit(device * 2, at, math.floor(at)) == ACCEPTED:
            queue.push(device, at + connack, RESULT, attempt, 0)
        else:
            queue.push(device, at, RESULT, attempt, FAILURE_CODE[self.refuse_kind])

    def _result(self, at: float, _seq: int, device: int, attempt: int, code: int) -> None:
        state = self.devices[device]
        if state.attempt != attempt:
            return  # the core closed this attempt; the CRT reports nothing
        state.attempt = 0
        event: Event
        if code == 0:
            if self.machines[device].state is State.CONNECTING:
                region_index = state.attempt_region
                connection = Connection(
                    attempt=attempt,
                    region=self.regions[region_index].name,
                    why=WHY_NAMES[state.attempt_why],
                    connected_at=at,
                )
                self.records[device].connections.append(connection)
                state.connection = connection
                state.region = region_index
                self.regions[region_index].connected += 1
                self.connected += 1
            event = ConnectSucceeded(now=at, attempt=attempt)
        else:
            failure = FAILURES[code - 1]
            failures = self.records[device].failures
            name = FAILURE_NAMES[code - 1]
            failures[name] = failures.get(name, 0) + 1
            event = ConnectFailed(
                now=at, attempt=attempt, failure=failure, detail=_DETAIL.get(failure, "")
            )
        self._feed(device, event)

    def _end(self, device: int, attempt: int, now: float) -> None:
        state = self.devices[device]
        current = state.connection
        if current is not None and current.attempt == attempt:
            current.ended_at = now
            state.connection = None
            self.regions[state.region].connected -= 1
            state.region = -1
            self.connected -= 1

    def _lost(self, at: float, _seq: int, device: int, attempt: int, code: int) -> None:
        current = self.devices[device].connection
        if current is None or current.attempt != attempt:
            return
        self._end(device, attempt, at)
        failure = FAILURES[code - 1]
        self._feed(
            device,
            ConnectionLost(
                now=at, attempt=attempt, failure=failure, detail=_DETAIL.get(failure, "")
            ),
        )

    def _publish_failed(self, at: float, _seq: int, device: int, attempt: int, _b: int) -> None:
        current = self.devices[device].connection
        if current is None or current.attempt != attempt:
            return
        self._end(device, attempt, at)
        self._feed(
            device,
            PublishFailed(
                now=at,
                attempt=attempt,
                failure=FailureKind.TIMEOUT,
                detail="AWS_ERROR_MQTT_TIMEOUT",
            ),
        )

    # ------------------------------------------------------ DNS, probes

    def _dns_ask(self, at: float, _seq: int, device: int, _a: int, _b: int) -> None:
        done, result = self.dns.resolve(at)
        self.queue.push(device, done, DNS, self._dns_index(result))

    def _dns(self, at: float, _seq: int, device: int, index: int, _b: int) -> None:
        result = self._dns_results[index]
        event: Event
        if result.failure is not None:
            event = DnsFailed(now=at, failure=result.failure, detail=result.failure.value)
        else:
            assert result.target is not None
            event = DnsAnswered(
                now=at, target=result.target, ttl=max(0.0, result.expires_at - at), txt=result.txt
            )
        self._feed(device, event)

    def _probe(self, device: int, command: Probe, now: float) -> None:
        endpoint = self._endpoint_id(command.endpoint)
        region_index = self._endpoint_region[endpoint]
        queue, model = self.queue, self.model
        packed = endpoint * 16
        probe_id = command.probe_id
        if region_index < 0:
            code = FAILURE_CODE[FailureKind.RESOLVE]
            queue.push(device, now + model.dns_query_s, PROBE, probe_id, packed + code)
            return
        region = self.regions[region_index]
        if region.killed:
            code = FAILURE_CODE[FailureKind.REFUSED]
            refused = model.refused_s.sample(self.devices[device].draw())
            queue.push(device, now + refused, PROBE, probe_id, packed + code)
        elif region.blackholed:
            code = FAILURE_CODE[FailureKind.TIMEOUT]
            queue.push(device, now + self._probe_timeout_s, PROBE, probe_id, packed + code)
        elif command.depth is ProbeDepth.TCP:
            queue.push(device, now + model.probe_tcp_s, PROBE, probe_id, packed)
        elif command.depth is ProbeDepth.TLS and model.probe_tls_service_s > 0:
            queue.push(device, now, TLS_PROBE, probe_id, packed)  # the testbed's TLS: in turn
        elif command.depth is ProbeDepth.TLS:  # the JITR gate completes TLS too
            queue.push(device, now + model.probe_tls_s, PROBE, probe_id, packed)
        elif model.handshake_service_s > 0:  # MQTT, in turn for the testbed's TLS throughput
            queue.push(device, now, PROBE_HANDSHAKE, probe_id, packed)
        else:  # MQTT: a CONNECT of its own, under `<client id>-probe`
            queue.push(device, self._handshake_done(now, device), PROBE_ARRIVE, probe_id, packed)

    def _probe_handshake(
        self, at: float, _seq: int, device: int, probe_id: int, packed: int
    ) -> None:
        self.queue.push(device, self._handshake_done(at, device), PROBE_ARRIVE, probe_id, packed)

    def _tls_probe(self, at: float, _seq: int, device: int, probe_id: int, packed: int) -> None:
        """A TLS probe of a live region on the testbed: its handshake waits
        for the testbed's TLS throughput, which CONNECTs share
        (WorldModel.probe_tls_service_s), then takes what it takes alone."""
        begin = max(at, self._handshakes_free_at)
        self._handshakes_free_at = begin + self.model.probe_tls_service_s
        self.queue.push(device, begin + self.model.probe_tls_s, PROBE, probe_id, packed)

    def _probe_arrive(self, at: float, _seq: int, device: int, probe_id: int, packed: int) -> None:
        region = self.regions[self._endpoint_region[packed // 16]]
        code = 0
        if region.killed:
            code = FAILURE_CODE[FailureKind.JITR_HANGUP]
        elif region.blackholed:
            self.queue.push(
                device,
                at - self.model.handshake_s.median + self._probe_timeout_s,
                PROBE, probe_id, packed + FAILURE_CODE[FailureKind.TIMEOUT],
            )  # fmt: skip
            return
        elif region.jitr and not region.registered(device, at):
            code = FAILURE_CODE[FailureKind.JITR_HANGUP]
        elif region.admit(device * 2 + 1, at, math.floor(at)) != ACCEPTED:
            code = FAILURE_CODE[self.refuse_kind]
        done = at + self.model.connack_s if code == 0 else at  # a close: at once
        self.queue.push(device, done, PROBE, probe_id, packed + code)

    def _probe_done(self, at: float, _seq: int, device: int, probe_id: int, packed: int) -> None:
        code = packed % 16
        failure = FAILURES[code - 1] if code else None
        self._feed(
            device,
            ProbeCompleted(
                now=at,
                probe_id=probe_id,
                endpoint=self._endpoints[packed // 16],
                healthy=code == 0,
                failure=failure,
                detail=_DETAIL.get(failure, "") if failure else "",
            ),
        )

    # ------------------------------------------------------------- faults

    def _fault(self, at: float, index: int) -> None:
        fault = self.scenario.timeline[index]
        assert self.t0 is not None
        self.applied.append((at - self.t0, fault))
        region = None
        if fault.region is not None:
            name = self.role_to_region[fault.region]
            region = next(r for r in self.regions if r.name == name)
        match fault.fault:
            case "kill":
                assert region is not None
                region.killed = True
                self._kill_connections(region, at)
            case "restore":
                assert region is not None
                if region.killed:
                    region.killed = False
                    region.restart(at)
            case "blackhole":
                assert region is not None
                if not region.blackholed:
                    region.blackholed = True
                    self.blackholes[self.regions.index(region)].append((at, math.inf))
                    self._blackhole_connections(region, at)
            case "heal":
                assert region is not None
                if region.blackholed:
                    region.blackholed = False
                    spans = self.blackholes[self.regions.index(region)]
                    spans[-1] = (spans[-1][0], at)
            case "jitr":
                assert region is not None
                region.jitr, region.jitr_delay_s = fault.on, fault.delay_s
            case "cname":
                assert fault.target is not None
                target = fault.target
                if target in self.role_to_region:
                    name = self.role_to_region[target]
                    target = next(r.host for r in self.regions if r.name == name)
                self.dns.target = target
                if fault.ttl is not None:
                    self.dns.ttl_s = float(fault.ttl)
            case "dns-fail":
                self.dns.failing = fault.mode
            case "dns-heal":
                self.dns.failing = None

    def _connected_to(self, region: Region) -> list[int]:
        """The devices connected to `region` now, in device order (a fault is
        a barrier: every device has caught up with it)."""
        wanted = self.regions.index(region)
        return [device for device, state in enumerate(self.devices) if state.region == wanted]

    def _kill_connections(self, region: Region, at: float) -> None:
        code = FAILURE_CODE[FailureKind.CLOSED]
        notice = self.model.kill_notice_s
        for device in self._connected_to(region):
            current = self.devices[device].connection
            assert current is not None
            lost_at = at + notice.sample(self.devices[device].draw())
            self.queue.push(device, lost_at, LOST, current.attempt, code)

    def _blackhole_connections(self, region: Region, at: float) -> None:
        """Nothing is refused: each device notices from silence, by its first
        publish that gets no PUBACK (QoS 1), else by its keepalive ping."""
        fleet = self.scenario.fleet
        interval = fleet.publish_interval_s
        assert self.t_telemetry is not None
        extra = self.model.ack_timeout_extra_s
        for device in self._connected_to(region):
            current = self.devices[device].connection
            assert current is not None
            start = self.t_telemetry + self.phase[device]
            tick = start + interval * max(0, math.ceil((at - start) / interval))
            if fleet.qos == 1 and tick < self.t_stop:
                notice = tick + self._ack_timeout_s + extra.sample(self.devices[device].draw())
                self.queue.push(device, notice, PUBFAIL, current.attempt)
            else:
                silence = self.devices[device].draw() * self._keepalive_s
                notice = at + silence + self._ping_timeout_s
                code = FAILURE_CODE[FailureKind.TIMEOUT]
                self.queue.push(device, notice, LOST, current.attempt, code)

    # ------------------------------------------------------------ others

    def _start(self, at: float, _seq: int, device: int, _a: int, _b: int) -> None:
        self._feed(device, Started(now=at))

    def _timer(self, at: float, _seq: int, device: int, index: int, _b: int) -> None:
        self._feed(device, TimerFired(now=at, timer=TIMERS[index]))
