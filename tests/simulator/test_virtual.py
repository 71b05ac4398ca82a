"""The fleet in virtual time: the world's rules, the grouped telemetry
against message-by-message stepping, and whole scenarios end to end.

No testbed here (see test_virtual_validation.py for real vs virtual); the
devices are the agent's unchanged core, the regions the world model.
"""

from __future__ import annotations

import gc
import heapq
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from iotdr.agent.core.commands import ArmTimer, CancelTimer
from iotdr.agent.core.events import ConnectSucceeded, Event, TimerFired, TimerName
from iotdr.agent.core.machine import Machine
from iotdr.simulator import advise as advise_module
from iotdr.simulator.advise import Trial, advise
from iotdr.simulator.device import Device, DeviceRecord
from iotdr.simulator.draws import device_seed
from iotdr.simulator.results import fleet_report
from iotdr.simulator.scenario import Scenario, load_scenario, parse_scenario
from iotdr.simulator.virtual_fleet import VirtualFleet
from iotdr.simulator.virtual_rng import SplitMix64
from iotdr.simulator.virtual_run import (
    finish_records,
    run_shard,
    run_virtual,
    the_testbed_regions,
    virtual_settings,
)
from iotdr.simulator.virtual_world import (
    ACCEPTED,
    REFUSED_ACCOUNT,
    REFUSED_CLIENT,
    TESTBED,
    ConnectQuota,
    DnsModel,
    Latency,
    WorldModel,
    without_testbed_limits,
)

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "scenarios"
EXAMPLES = ["region-hard-down", "region-blackhole", "cname-moved", "flapping-primary"]


def scenario(name: str, devices: int = 100) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml").with_devices(devices)


# ------------------------------------------------------------ the world


def test_quota_is_a_token_bucket_of_one_seconds_worth() -> None:
    quota = ConnectQuota(5, 0, now=0.0)
    verdicts = [quota.admit(client, 0.0) for client in range(7)]
    assert verdicts == [ACCEPTED] * 5 + [REFUSED_ACCOUNT] * 2
    # 5 tokens/s: one token back after 200 ms, on the millisecond clock.
    assert quota.admit(10, 0.1999) == REFUSED_ACCOUNT
    assert quota.admit(11, 0.2) == ACCEPTED
    # Never more than one second's worth, however long the region idles.
    assert [quota.admit(20 + c, 100.0) for c in range(6)] == [ACCEPTED] * 5 + [REFUSED_ACCOUNT]


def test_client_id_rule_counts_refused_connects_too() -> None:
    quota = ConnectQuota(None, 1.0, now=0.0)
    assert quota.admit(1, 0.0) == ACCEPTED
    assert quota.admit(1, 0.999) == REFUSED_CLIENT  # < 1 s after the last
    assert quota.admit(1, 1.5) == REFUSED_CLIENT  # the refused one counted
    assert quota.admit(1, 2.5) == ACCEPTED
    assert quota.admit(2, 2.5) == ACCEPTED  # another client id is not affected


def test_client_id_refusal_takes_no_token() -> None:
    quota = ConnectQuota(1, 1.0, now=0.0)
    assert quota.admit(1, 0.0) == ACCEPTED
    assert quota.admit(1, 0.5) == REFUSED_CLIENT
    assert quota.admit(2, 1.0) == ACCEPTED  # the bucket refilled; nothing taken by the refusal


def test_shared_resolver_caches_for_the_ttl_and_serves_what_remains() -> None:
    dns = DnsModel(
        "a-ats.iot.region-a.x", '{"primary": "region-a", "secondary": "region-b"}', 5.0, TESTBED
    )
    _, first = dns.resolve(10.0)
    assert first.target == "a-ats.iot.region-a.x" and dns.queries == 1
    dns.target = "a-ats.iot.region-b.x"  # the authoritative change
    _, cached = dns.resolve(12.0)
    assert cached is first and dns.queries == 1  # still cached
    _, fresh = dns.resolve(first.expires_at + 0.001)
    assert fresh.target == "a-ats.iot.region-b.x" and dns.queries == 2
    dns.failing = "timeout"
    late = fresh.expires_at + 1
    at, failed = dns.resolve(late)
    assert failed.failure is not None and at == pytest.approx(late + TESTBED.dns_timeout_s)


def test_latency_samples_stay_inside_the_measured_range() -> None:
    latency = Latency.measured([0.003, 0.001, 0.002, 0.010])
    assert latency.sample(0.0) == 0.001 and latency.sample(1.0) == 0.010
    assert 0.001 <= latency.sample(0.37) <= 0.010


# --------------------------------- grouped telemetry == message by message

_ACK_S = 0.004


def _replay(fleet: VirtualFleet, local: int, index: int) -> DeviceRecord:
    """The same device stepped the plain way: a fresh `Device` (the real
    runner's, with its message queue) fed the same events, every message
    produced, published and acknowledged one at a time."""
    assert fleet.event_log is not None and fleet.t_telemetry is not None and fleet.t0 is not None
    machine_settings = fleet.machines[local].settings
    device = Device(
        machine_settings.client_id,
        machine_settings,
        SplitMix64(device_seed(fleet.scenario.seed, index)),
    )
    interval = fleet.scenario.fleet.publish_interval_s
    first = fleet.t_telemetry + fleet.phase[local]
    end = fleet.t0 + fleet.scenario.duration_s + fleet.scenario.drain_s
    work: list[tuple[float, int, int, object]] = []
    order = 0
    for event in fleet.event_log[local]:
        work.append((event.now, 1, order, event))
        order += 1
    k = 0
    while first + k * interval < fleet.t_stop:
        work.append((first + k * interval, 0, order, None))
        order += 1
        k += 1
    heapq.heapify(work)
    holes = dict(zip((r.name for r in fleet.regions), fleet.blackholes, strict=True))

    def send(now: float) -> None:
        region = device.region
        attempt = device.connected_attempt
        if region is None or attempt is None:
            return
        dark = any(s <= now < e for s, e in holes[region])
        for message in device.take_sendable():
            if not dark:
                heapq.heappush(work, (now + _ACK_S, 2, message.sequence, attempt))

    while work:
        at, kind, order, payload = heapq.heappop(work)
        if at > end:
            break
        if kind == 0:
            device.produce(at)
            send(at)
        elif kind == 1:
            assert isinstance(payload, Event)
            device.handle(payload)
            if isinstance(payload, ConnectSucceeded):
                send(at)
        else:
            assert isinstance(payload, int)
            device.acknowledged(order, payload, at)
    return device.record


@pytest.mark.parametrize("name", ["region-hard-down", "region-blackhole"])
def test_grouped_telemetry_gives_what_stepping_every_message_gives(name: str) -> None:
    sc = scenario(name, 40)
    model = replace(TESTBED, first_ack_s=Latency.fixed(_ACK_S))
    fleet = VirtualFleet(sc, virtual_settings(sc), the_testbed_regions(), model, keep_events=True)
    fleet.start_timeline(fleet.ramp_up())
    fleet.finish()
    assert fleet.t0 is not None
    plain = [_replay(fleet, local, local) for local in range(len(fleet.machines))]
    grouped = finish_records(fleet)
    for record in plain:  # the same shift to t=0 as the virtual run's
        record.attempts = [t - fleet.t0 for t in record.attempts]
        for c in record.connections:
            c.connected_at -= fleet.t0
            c.ended_at = None if c.ended_at is None else c.ended_at - fleet.t0
            c.first_ack_at = None if c.first_ack_at is None else c.first_ack_at - fleet.t0
    # Which sequences were acknowledged matters only against a cloud observer,
    # which virtual time has not; the counts are compared.
    for record in plain:
        assert len(record.acknowledged_sequences) == record.acknowledged
        record.acknowledged_sequences = set()
    assert grouped == plain
    assert sum(r.resent for r in plain) > 0 or name != "region-blackhole"
    facts = run_virtual(sc, model=model)
    report, _ = fleet_report(replace(facts, records=plain, summary=None), sc.criteria, sc.name)
    grouped_report, _ = fleet_report(
        replace(facts, records=grouped, summary=None), sc.criteria, sc.name
    )
    assert grouped_report == report


# ------------------------------------- grouped order == global order

_MIXED = """
name: every-kind-of-entry
duration_s: 50
drain_s: 5
fleet: {devices: 300, connect_rate_per_s: 400, settle_s: 1, publish_interval_s: 1.0}
timeline:
  - {at_s: 2, fault: jitr, region: secondary, delay_s: 2}
  - {at_s: 3, fault: kill, region: primary}
  - {at_s: 9, fault: dns-fail, mode: servfail}
  - {at_s: 12, fault: restore, region: primary}
  - {at_s: 14, fault: dns-heal}
  - {at_s: 16, fault: cname, target: secondary, ttl: 2}
  - {at_s: 24, fault: blackhole, region: secondary}
  - {at_s: 33, fault: heal, region: secondary}
  - {at_s: 36, fault: cname, target: primary}
agent:
  connection: {connect_spread_s: 1}
  failback: {probe_depth: mqtt, stability_window_s: 4}
limits: {account_connects_per_s: 60}
"""


def _both_orders(sc: Scenario, model: WorldModel) -> tuple[VirtualFleet, VirtualFleet]:
    fleets = []
    for grouped in (False, True):
        fleet = VirtualFleet(
            sc, virtual_settings(sc), the_testbed_regions(), model, grouped=grouped
        )
        fleet.start_timeline(fleet.ramp_up())
        fleet.finish()
        fleets.append(fleet)
    return fleets[0], fleets[1]


@pytest.mark.parametrize(
    ("name", "devices", "model"),
    [
        *[(name, 150, TESTBED) for name in EXAMPLES],  # the testbed's shared TLS queue
        ("region-hard-down", 400, without_testbed_limits(TESTBED)),
        ("mixed", 300, TESTBED),
        ("mixed", 300, without_testbed_limits(TESTBED)),
    ],
)
def test_grouped_order_gives_what_global_order_gives(
    name: str, devices: int, model: WorldModel
) -> None:
    """Working through a device's own entries until the next one that
    touches something shared gives every device, every region's quota and
    the resolver exactly what the one global order gives."""
    if name == "mixed":
        sc = parse_scenario(_MIXED, "mixed").with_devices(devices)
    else:
        sc = scenario(name, devices)
    plain, grouped = _both_orders(sc, model)
    assert grouped.t0 == plain.t0 and grouped.applied == plain.applied
    assert grouped.events == plain.events and grouped.dns.queries == plain.dns.queries
    assert [r.seconds for r in grouped.regions] == [r.seconds for r in plain.regions]
    assert finish_records(grouped) == finish_records(plain)
    # It did group: far fewer visits to a device than in global order.
    assert grouped.queue.visits < 0.75 * plain.queue.visits


def test_the_mixed_scenario_reaches_every_kind_of_entry() -> None:
    """The scenario above is worth comparing only if its devices meet every
    rule: refused by the quota, hung up on by JITR, resolved, probed over
    MQTT, blackholed."""
    sc = parse_scenario(_MIXED, "mixed")
    fleet = VirtualFleet(sc, virtual_settings(sc), the_testbed_regions(), TESTBED)
    fleet.start_timeline(fleet.ramp_up())
    fleet.finish()
    failures: dict[str, int] = {}
    for record in fleet.records:
        for kind, count in record.failures.items():
            failures[kind] = failures.get(kind, 0) + count
    assert failures.get("jitr-hangup", 0) > 0 and failures.get("refused", 0) > 0
    assert fleet.t0 is not None
    window = (fleet.t0 + 24, fleet.t0 + 33)
    cut = [
        c
        for r in fleet.records
        for c in r.connections
        if c.region == "region-b" and c.ended_at is not None and window[0] <= c.ended_at < window[1]
    ]
    assert cut  # the blackhole found devices to cut off
    assert sum(s[1] for r in fleet.regions for s in r.seconds.values()) > 0  # quota refusals
    assert fleet.dns.queries > 3


def test_only_a_live_arming_fires() -> None:
    """A re-armed or cancelled timer's entry leaves the device's heap
    (FleetQueue.remove): every TimerFired a core is fed is its latest
    ArmTimer of that timer, at its time, not cancelled since. Replayed
    through a fresh core, the commands say which armings were live."""
    sc = parse_scenario(_MIXED, "mixed").with_devices(120)
    fleet = VirtualFleet(sc, virtual_settings(sc), the_testbed_regions(), TESTBED, keep_events=True)
    fleet.start_timeline(fleet.ramp_up())
    fleet.finish()
    assert fleet.event_log is not None
    fired = dropped = 0
    for local, events in enumerate(fleet.event_log):
        settings = fleet.machines[local].settings
        core = Machine(settings, SplitMix64(device_seed(sc.seed, fleet.indices[local])))
        armed: dict[TimerName, float] = {}
        for event in events:
            if isinstance(event, TimerFired):
                assert armed.pop(event.timer) == event.now, (local, event)
                fired += 1
            for command in core.handle(event):
                if isinstance(command, ArmTimer):
                    dropped += command.timer in armed
                    armed[command.timer] = command.at
                elif isinstance(command, CancelTimer):
                    dropped += armed.pop(command.timer, None) is not None
    assert fired > 0 and dropped > 0  # timers fired, and live ones were re-armed or cancelled


# ------------------------------------------------------------ scenarios


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_scenarios_in_virtual_time(name: str) -> None:
    sc = scenario(name)
    report, rows = fleet_report(run_virtual(sc), sc.criteria, sc.name)
    assert report["mode"] == "virtual"
    assert report["devices"] == 100 and len(rows) == 100
    assert report["disrupted"] == 100
    assert report["recovered"] == 1.0
    messages = report["messages"]
    assert isinstance(messages, dict)
    assert messages["lost"] == 0 and messages["published"] > 100
    assert report["flaps"] == 0
    assert report["throttled_by_client_id"] == 0


def test_a_run_is_a_function_of_its_seed() -> None:
    sc = scenario("region-hard-down", 50)
    first, _ = fleet_report(run_virtual(sc), sc.criteria, sc.name)
    again, _ = fleet_report(run_virtual(sc), sc.criteria, sc.name)
    first.pop("simulator"), again.pop("simulator")
    assert first == again


def test_a_shard_pauses_the_cyclic_collector_and_gives_it_back() -> None:
    """The engine turns the cyclic GC off for a shard (it makes no cycles);
    the caller's process gets it back, on error too."""
    sc = scenario("region-hard-down", 20)
    seen: list[bool] = []

    def agree(t: float) -> float:  # called mid-shard, after the ramp-up
        seen.append(gc.isenabled())
        return t

    run_shard(sc, TESTBED, 0, 1, agree)
    assert seen == [False] and gc.isenabled()

    def broken(_t: float) -> float:
        raise RuntimeError("the other shards are gone")

    with pytest.raises(RuntimeError, match="shards are gone"):
        run_shard(sc, TESTBED, 0, 1, broken)
    assert gc.isenabled()


def test_a_storm_above_the_quota_is_throttled_and_the_fleet_still_recovers() -> None:
    sc = scenario("region-hard-down", 2000)
    assert sc.limits is not None
    sc = replace(sc, limits=replace(sc.limits, account_connects_per_s=200.0))
    sc = replace(sc, fleet=replace(sc.fleet, connect_rate_per_s=150.0))
    sc = replace(sc, timeline=sc.timeline[:1], duration_s=60.0)  # killed for good
    devices_against_aws = without_testbed_limits(TESTBED)  # no one-machine TLS limit
    report, _ = fleet_report(run_virtual(sc, model=devices_against_aws), sc.criteria, sc.name)
    throttled = report["throttled_connects"]
    assert isinstance(throttled, int) and throttled > 0
    assert report["throttled_by_client_id"] == 0  # the agent spaces its own CONNECTs
    assert report["recovered"] == 1.0


def test_shards_share_the_quota_and_merge_into_one_report() -> None:
    sc = scenario("region-hard-down", 300)
    facts = run_virtual(sc, shards=2)
    report, rows = fleet_report(facts, sc.criteria, sc.name)
    assert [r.client_id for r in rows] == sc.fleet.client_ids()
    assert report["recovered"] == 1.0 and report["disrupted"] == 300


def test_cli_runs_a_scenario_in_virtual_time_without_a_testbed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "iotdr.cli.main", "simulate", "run",
         str(SCENARIOS / "cname-moved.yaml"), "--virtual", "--devices", "200",
         "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "virtual" and report["devices"] == 200
    assert not (out / "testbed").exists()
    for plot in ("connected.png", "connects.png", "rto_cdf.png"):
        assert (out / plot).stat().st_size > 1000
    assert "virtual run" in (out / "report.html").read_text()


def test_advice_picks_a_spread_without_a_throttled_storm(tmp_path: Path) -> None:
    plot = tmp_path / "advice.png"
    done = subprocess.run(
        [sys.executable, "-m", "iotdr.cli.main", "simulate", "advise",
         str(SCENARIOS / "region-hard-down.yaml"), "--devices", "400", "--quota", "100",
         "--sample", "200", "--plot", str(plot)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = next(line for line in done.stdout.splitlines() if line.endswith("<- advice"))
    throttled = int(chosen.split()[4])
    assert throttled <= 0.01 * 400  # no storm
    storm = next(line for line in done.stdout.splitlines() if line.split()[0] == "0.5")
    assert int(storm.split()[4]) > throttled  # a fleet in lock step is throttled
    assert plot.stat().st_size > 1000


_TRIAL = advise_module.trial
_TRIAL_PIDS = Path("/nonexistent")  # set by the test: where each trial writes its process id


def _recording_trial(sc: Scenario, spread_s: float, backoff_max_s: float, devices: int) -> Trial:
    with _TRIAL_PIDS.open("a") as pids:
        pids.write(f"{os.getpid()}\n")
    return _TRIAL(sc, spread_s, backoff_max_s, devices)


def test_advice_trials_run_at_once_give_the_same_figures_as_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials are independent, seeded runs: forked and run two at a time
    (in processes other than this one) they give exactly what they
    give one after another."""
    sc = load_scenario(SCENARIOS / "region-hard-down.yaml")
    pids = tmp_path / "pids"
    monkeypatch.setattr(sys.modules[__name__], "_TRIAL_PIDS", pids)
    monkeypatch.setattr(advise_module, "trial", _recording_trial)
    at_once = advise(sc, 300, 100.0, 100, jobs=2)
    workers = set(pids.read_text().split())
    assert len(workers) >= 2 and str(os.getpid()) not in workers  # a pool per phase
    assert at_once == advise(sc, 300, 100.0, 100, jobs=1)


def test_advice_refuses_a_scenario_without_faults(tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("duration_s: 10\nfleet: {devices: 10}\n")
    done = subprocess.run(
        [sys.executable, "-m", "iotdr.cli.main", "simulate", "advise", str(quiet),
         "--devices", "10", "--quota", "5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "timeline" in done.stderr and "Traceback" not in done.stderr


def test_tls_probes_on_the_testbed_wait_for_its_tls_throughput() -> None:
    """On the testbed a TLS probe is a handshake with the regions' brokers
    on the machine's two cores, in turn with every other one: a CNAME move
    makes every device probe the new region each second, and when the
    throughput is scarce those probes, and so the moves, come later. Against
    AWS IoT (no such limit) nothing waits."""
    sc = scenario("cname-moved", 200)

    def rto_p50(model: WorldModel) -> float:
        report, _ = fleet_report(run_virtual(sc, model=model), sc.criteria, sc.name)
        rto = report["rto_s"]
        assert isinstance(rto, dict)
        return math.inf if rto["p50"] is None else float(rto["p50"])  # None: never

    unlimited = rto_p50(replace(TESTBED, probe_tls_service_s=0.0))
    assert unlimited < 10.0
    assert rto_p50(replace(TESTBED, probe_tls_service_s=0.02)) > unlimited + 1.0  # 50 a second
    assert without_testbed_limits(TESTBED).probe_tls_service_s == 0.0
