"""The decision core, by tables of single transitions and by scenarios in
virtual time (see world.py). No real clock anywhere: nothing here can be
made flaky by a busy machine."""

from __future__ import annotations

import random

import pytest

from iotdr.agent.core.commands import (
    ArmTimer,
    CancelTimer,
    Command,
    Connect,
    Disconnect,
    Probe,
    Resolve,
    Why,
)
from iotdr.agent.core.endpoints import Endpoint, Role
from iotdr.agent.core.errors import MachineError
from iotdr.agent.core.events import (
    ConfigChanged,
    ConnectFailed,
    ConnectionLost,
    ConnectSucceeded,
    DnsAnswered,
    DnsFailed,
    DnsFailure,
    ProbeCompleted,
    Started,
    StopRequested,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import Machine, State
from tests.agent.world import EVIL, PRIMARY, SECONDARY, DnsMode, Health, World, make_settings

TXT = '{"primary": "region-a", "secondary": "region-b"}'


def connected_machine(**overrides: object) -> tuple[Machine, int]:
    """A machine connected to the primary at t=10, and its attempt id."""
    machine = Machine(make_settings(**overrides), random.Random(1))
    machine.handle(Started(now=0.0))
    machine.handle(DnsAnswered(now=0.1, target=PRIMARY.host, ttl=5, txt=TXT))
    commands = machine.handle(TimerFired(now=0.6, timer=TimerName.RECONNECT))
    connect = next(c for c in commands if isinstance(c, Connect))
    machine.handle(ConnectSucceeded(now=10.0, attempt=connect.attempt))
    assert machine.state is State.CONNECTED
    return machine, connect.attempt


def kinds(commands: list[Command]) -> list[type[Command]]:
    return [type(c) for c in commands]


def hear_dns_move(machine: Machine, now: float, target: str, txt: str | None = TXT) -> Probe:
    """DNS names a new target; after this device's share of the move
    spread, the core probes the target. Returns that probe."""
    return hear_dns_move_at(machine, now, target, txt)[0]


def hear_dns_move_at(
    machine: Machine, now: float, target: str, txt: str | None = TXT
) -> tuple[Probe, float]:
    """`hear_dns_move`, and when the device's share of the spread ended."""
    commands = machine.handle(DnsAnswered(now=now, target=target, ttl=5, txt=txt))
    assert not any(isinstance(c, Probe | Connect | Disconnect) for c in commands)
    arm = next(c for c in commands if isinstance(c, ArmTimer) and c.timer is TimerName.DNS_MOVE)
    assert now <= arm.at <= now + machine.settings.connection.connect_spread_s
    commands = machine.handle(TimerFired(now=arm.at, timer=TimerName.DNS_MOVE))
    return next(c for c in commands if isinstance(c, Probe)), arm.at


# ---------------------------------------------------------------- tables


def test_started_with_dns_resolves_first() -> None:
    machine = Machine(make_settings(), random.Random(0))
    assert machine.handle(Started(now=0.0)) == [
        Resolve(name="iot.example.test", txt_name="_iot.example.test")
    ]
    assert machine.state is State.RESOLVING


def test_started_without_dns_spreads_the_first_connect() -> None:
    machine = Machine(make_settings(dns={}), random.Random(0))
    commands = machine.handle(Started(now=0.0))
    assert kinds(commands) == [ArmTimer]
    arm = commands[0]
    assert isinstance(arm, ArmTimer) and 0.0 <= arm.at <= 0.5
    commands = machine.handle(TimerFired(now=arm.at, timer=TimerName.RECONNECT))
    assert commands == [
        Connect(attempt=1, endpoint=PRIMARY, why=Why.START),
        ArmTimer(timer=TimerName.ATTEMPT, at=arm.at + 6.0),
    ]


def test_event_before_started_is_a_contract_error() -> None:
    machine = Machine(make_settings(), random.Random(0))
    with pytest.raises(MachineError):
        machine.handle(ConnectSucceeded(now=0.0, attempt=1))


@pytest.mark.parametrize(
    ("failure", "expect_immediate_failover"),
    [
        (FailureKind.REFUSED, True),
        (FailureKind.TIMEOUT, True),
        (FailureKind.TLS, True),
        (FailureKind.AUTH, False),  # CONNECT was sent: the 1/s rule applies
        (FailureKind.JITR_HANGUP, False),  # stays, retries on the JITR schedule
    ],
)
def test_connect_failure_table(failure: FailureKind, expect_immediate_failover: bool) -> None:
    machine, attempt = connected_machine()
    lost = machine.handle(ConnectionLost(now=20.0, attempt=attempt, failure=FailureKind.CLOSED))
    arm = next(c for c in lost if isinstance(c, ArmTimer) and c.timer is TimerName.RECONNECT)
    retry = machine.handle(TimerFired(now=arm.at, timer=TimerName.RECONNECT))
    assert Connect(attempt=attempt + 1, endpoint=PRIMARY, why=Why.FAILOVER) in retry
    after = machine.handle(ConnectFailed(now=arm.at + 0.01, attempt=attempt + 1, failure=failure))
    if expect_immediate_failover:
        assert Connect(attempt=attempt + 2, endpoint=SECONDARY, why=Why.FAILOVER) in after
    else:
        assert not any(isinstance(c, Connect) for c in after)
        timer = next(c for c in after if isinstance(c, ArmTimer) and c.timer is TimerName.RECONNECT)
        assert timer.at >= arm.at + 0.01 + 1.0


@pytest.mark.parametrize(
    "event",
    [
        DnsFailed(now=20.0, failure=DnsFailure.TIMEOUT),
        DnsFailed(now=20.0, failure=DnsFailure.SERVFAIL),
        DnsFailed(now=20.0, failure=DnsFailure.NXDOMAIN),
        DnsAnswered(now=20.0, target=EVIL, ttl=5, txt=TXT),
        DnsAnswered(now=20.0, target=PRIMARY.host, ttl=5, txt="not json"),
        DnsAnswered(now=20.0, target=PRIMARY.host, ttl=5, txt='{"primary": 1}'),
    ],
)
def test_dns_trouble_never_touches_the_connection(event: DnsFailed | DnsAnswered) -> None:
    machine, _ = connected_machine()
    commands = machine.handle(event)
    assert not any(isinstance(c, Connect | Disconnect) for c in commands)
    assert machine.state is State.CONNECTED
    assert any(isinstance(c, ArmTimer) and c.timer is TimerName.DNS for c in commands)
    assert machine.snapshot().last_error is not None


@pytest.mark.parametrize(("ttl", "expected_delay"), [(0.0, 1.0), (5.0, 5.0), (86400.0, 300.0)])
def test_dns_reresolves_by_ttl_clamped(ttl: float, expected_delay: float) -> None:
    machine, _ = connected_machine()
    commands = machine.handle(DnsAnswered(now=20.0, target=PRIMARY.host, ttl=ttl, txt=TXT))
    assert ArmTimer(timer=TimerName.DNS, at=20.0 + expected_delay) in commands


def test_cname_change_checks_the_target_then_moves_break_before_make() -> None:
    machine, attempt = connected_machine()
    probe = hear_dns_move(machine, 20.0, SECONDARY.host)
    assert probe.endpoint == SECONDARY
    commands = machine.handle(
        ProbeCompleted(now=20.6, probe_id=probe.probe_id, endpoint=SECONDARY, healthy=True)
    )
    disconnect = commands.index(Disconnect(attempt=attempt))
    connect = next(
        i for i, c in enumerate(commands) if isinstance(c, Connect) and c.endpoint == SECONDARY
    )
    assert disconnect < connect
    assert commands[connect] == Connect(
        attempt=probe.probe_id + 1, endpoint=SECONDARY, why=Why.DNS_MOVE
    )


def test_a_fleet_behind_one_resolver_spreads_a_dns_move() -> None:
    """Every device learns of the move at the same instant (a shared
    cache's expiry); each leaves its working connection at its own share of
    `connect_spread_s`, as failbacks do, so the new region sees no storm."""
    moves: list[float] = []
    for seed in range(200):
        machine = Machine(make_settings(connection__connect_spread_s=10.0), random.Random(seed))
        machine.handle(Started(now=0.0))
        machine.handle(DnsAnswered(now=0.1, target=PRIMARY.host, ttl=5, txt=TXT))
        arm = machine.handle(TimerFired(now=15.0, timer=TimerName.RECONNECT))
        connect = next(c for c in arm if isinstance(c, Connect))
        machine.handle(ConnectSucceeded(now=15.1, attempt=connect.attempt))
        probe, due = hear_dns_move_at(machine, 20.0, SECONDARY.host)
        commands = machine.handle(
            ProbeCompleted(
                now=due + 0.05, probe_id=probe.probe_id, endpoint=SECONDARY, healthy=True
            )
        )
        moved = next(c for c in commands if isinstance(c, Connect))
        assert moved.why is Why.DNS_MOVE
        moves.append(due)
    per_second = [sum(1 for t in moves if s <= t - 20.0 < s + 1) for s in range(10)]
    assert all(20.0 <= t <= 30.0 for t in moves)
    assert max(per_second) < 2 * len(moves) / 10  # about uniform, no one-second storm


DEAD = Endpoint(host="abc-ats.iot.region-z.example.test", port=8883)


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        (FailureKind.OTHER, "resolve AWS_IO_DNS_INVALID_NAME"),  # a CNAME loop, NXDOMAIN
        (FailureKind.REFUSED, "connection refused"),
        (FailureKind.TIMEOUT, "no answer"),
    ],
)
def test_cname_to_a_target_that_does_not_answer_keeps_the_connection(
    failure: FailureKind, detail: str
) -> None:
    """Issue 12 item 6: the new target is checked before the working
    connection is left; a dead target leaves it alone and says why."""
    machine, _ = connected_machine()
    txt = '{"primary": "region-z", "secondary": "region-b"}'
    probe = hear_dns_move(machine, 20.0, DEAD.host, txt)
    commands = machine.handle(
        ProbeCompleted(
            now=20.7,
            probe_id=probe.probe_id,
            endpoint=DEAD,
            healthy=False,
            failure=failure,
            detail=detail,
        )
    )
    assert not any(isinstance(c, Connect | Disconnect) for c in commands)
    assert machine.state is State.CONNECTED and machine.snapshot().endpoint == PRIMARY
    assert f"{DEAD} does not answer" in (machine.snapshot().last_error or "")


@pytest.mark.parametrize(
    ("txt", "counted"),
    [
        ("not json", True),
        ('{"primary": 1}', True),
        ('{"primary": "region-x", "secondary": "region-y"}', True),  # regions nobody knows
        ('{"primary": "region-b", "secondary": "region-x"}', True),  # not the target's region
        ('{"primary": "region-a", "secondary": "region-b"}', False),
        (None, False),
    ],
)
def test_txt_answers_are_counted_when_refused(txt: str | None, counted: bool) -> None:
    """Issue 12 item 9: a malformed TXT, or one naming regions the agent
    does not know, is refused and counted; a good answer clears the error."""
    machine, _ = connected_machine()
    machine.handle(DnsAnswered(now=20.0, target=PRIMARY.host, ttl=5, txt=txt))
    snapshot = machine.snapshot()
    assert snapshot.dns.rejected == (1 if counted else 0)
    assert (snapshot.last_error is not None) == counted
    assert snapshot.state is State.CONNECTED
    machine.handle(DnsAnswered(now=25.0, target=PRIMARY.host, ttl=5, txt=TXT))
    assert machine.snapshot().last_error is None


def test_stop_disconnects_and_cancels_every_timer() -> None:
    machine, attempt = connected_machine()
    commands = machine.handle(StopRequested(now=30.0))
    assert commands[0] == Disconnect(attempt=attempt)
    assert {c.timer for c in commands if isinstance(c, CancelTimer)} == set(TimerName)
    assert machine.state is State.STOPPED
    assert (
        machine.handle(ConnectionLost(now=31.0, attempt=attempt, failure=FailureKind.CLOSED)) == []
    )


def test_attempt_without_answer_is_abandoned_at_its_deadline() -> None:
    machine, attempt = connected_machine()
    machine.handle(ConnectionLost(now=20.0, attempt=attempt, failure=FailureKind.TIMEOUT))
    commands = machine.handle(TimerFired(now=20.6, timer=TimerName.RECONNECT))
    assert Connect(attempt=attempt + 1, endpoint=SECONDARY, why=Why.FAILOVER) in commands
    commands = machine.handle(TimerFired(now=26.6, timer=TimerName.ATTEMPT))
    assert commands[0] == Disconnect(attempt=attempt + 1)
    # It may have sent CONNECT: the next one waits a second.
    assert not any(isinstance(c, Connect) for c in commands)
    assert ArmTimer(timer=TimerName.RECONNECT, at=27.6) in commands


def test_failback_attempt_hung_up_returns_instead_of_jitr_retrying() -> None:
    """The primary dying mid-handshake looks like a JITR hang-up; during a
    failback the agent goes straight back to where it came from."""
    world = started_world(failback__probe_interval_s=1.0, failback__stability_window_s=2.0)
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(world.now + 2.0)
    assert world.connected_to() == SECONDARY
    world.set_health(PRIMARY, Health.UP)
    world.jitr_pending[PRIMARY] = world.now + 100.0  # hangs up after TLS from now on
    world.run_until(world.now + 8.0)
    assert world.failback_times
    assert world.connected_to() == SECONDARY
    retries = [a for a in world.attempts if a.why is Why.JITR_RETRY]
    assert not retries


def test_stale_result_for_abandoned_attempt_is_ignored() -> None:
    machine, attempt = connected_machine()
    probe = hear_dns_move(machine, 20.0, SECONDARY.host)
    machine.handle(
        ProbeCompleted(now=20.55, probe_id=probe.probe_id, endpoint=SECONDARY, healthy=True)
    )
    assert (
        machine.handle(ConnectionLost(now=20.6, attempt=attempt, failure=FailureKind.CLOSED)) == []
    )
    assert machine.state is State.CONNECTING


def test_reload_with_new_identity_reconnects() -> None:
    machine, attempt = connected_machine()
    new = make_settings(client_id="dev-2")
    commands = machine.handle(ConfigChanged(now=30.0, settings=new))
    assert Disconnect(attempt=attempt) in commands
    assert Connect(attempt=attempt + 1, endpoint=PRIMARY, why=Why.CONFIG) in commands


def test_reload_with_same_identity_keeps_the_connection() -> None:
    machine, _ = connected_machine()
    new = make_settings(failback__stability_window_s=42)
    commands = machine.handle(ConfigChanged(now=30.0, settings=new))
    assert not any(isinstance(c, Connect | Disconnect) for c in commands)
    assert machine.snapshot().stability_window_s == 42


# ------------------------------------------------------------- scenarios


def started_world(**overrides: object) -> World:
    world = World(make_settings(**overrides), seed=7)
    world.start()
    world.run_until(5.0)
    assert world.connected_to() == PRIMARY
    return world


def test_primary_killed_fails_over_fast_and_fails_back_after_window() -> None:
    world = started_world()
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(6.0)  # within a second of the kill
    assert world.connected_to() == SECONDARY
    snapshot = world.machine.snapshot()
    assert snapshot.role is Role.SECONDARY and snapshot.failovers == 1
    assert snapshot.last_failover_s is not None and snapshot.last_failover_s < 1.0

    world.set_health(PRIMARY, Health.UP)
    recovered = world.now
    settings = world.settings.failback
    world.run_until(recovered + settings.probe_interval_s + settings.stability_window_s + 1.5)
    assert world.connected_to() == PRIMARY
    assert world.machine.snapshot().failbacks == 1


def test_blackholed_primary_fails_over_without_retrying_it_first() -> None:
    world = started_world()
    world.set_health(PRIMARY, Health.BLACKHOLED)
    world.run_until(5.0 + 4.0 + 1.0)  # loss shows after 4 s of timeouts
    assert world.connected_to() == SECONDARY


def test_device_side_health_beats_dns() -> None:
    """DNS keeps naming the primary (Route 53 sees it healthy), yet the
    device cannot reach it: the agent falls back on its own and stays."""
    world = started_world()
    world.set_health(PRIMARY, Health.BLACKHOLED)
    world.run_until(60.0)
    assert world.cname == PRIMARY
    assert world.connected_to() == SECONDARY


def test_cname_moved_is_followed_within_ttl() -> None:
    world = started_world()
    world.cname = SECONDARY
    moved = world.now
    world.run_until(moved + world.ttl + 1.0)
    assert world.connected_to() == SECONDARY
    # DNS names the secondary now: no probing back to the primary (the one
    # probe checked the secondary before the primary was left).
    world.run_until(moved + 120.0)
    assert world.connected_to() == SECONDARY
    probes = [c for c in world.log if isinstance(c, Probe)]
    assert [p.endpoint for p in probes] == [SECONDARY]


@pytest.mark.parametrize(
    "mode", [DnsMode.SERVFAIL, DnsMode.TIMEOUT, DnsMode.EVIL, DnsMode.GARBAGE_TXT]
)
def test_dns_faults_keep_the_working_connection(mode: DnsMode) -> None:
    world = started_world()
    attempts = len(world.attempts)
    world.dns_mode = mode
    world.run_until(120.0)
    assert world.connected_to() == PRIMARY
    assert len(world.attempts) == attempts


def test_jitr_on_secondary_is_retried_not_declared_dead() -> None:
    world = started_world()
    world.jitr_pending[SECONDARY] = world.now + 3.0  # activation takes 3 s
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(world.now + 10.0)
    assert world.connected_to() == SECONDARY
    after_kill = [a for a in world.attempts if a.start > 5.0]
    retries = [a for a in after_kill if a.why is Why.JITR_RETRY]
    assert retries and all(a.endpoint == SECONDARY for a in retries)


@pytest.mark.parametrize("health", [Health.AUTH_REJECT, Health.TLS_BAD])
def test_rejecting_primary_at_start_falls_over(health: Health) -> None:
    world = World(make_settings(), seed=3)
    world.health[PRIMARY] = health
    world.start()
    # A TLS failure shows only at the attempt deadline (s2n blinding).
    world.run_until(world.settings.connection.attempt_timeout_s + 2.0)
    assert world.connected_to() == SECONDARY


def test_failback_disabled_stays_on_secondary() -> None:
    world = started_world(failback__enabled=False)
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(10.0)
    world.set_health(PRIMARY, Health.UP)
    world.run_until(300.0)
    assert world.connected_to() == SECONDARY
    assert not any(isinstance(c, Probe) for c in world.log)


def test_flapping_primary_never_makes_the_agent_flap() -> None:
    world = started_world()
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(10.0)
    for second in range(10, 300):  # up one second, down the next
        world.health[PRIMARY] = Health.UP if second % 2 else Health.REFUSING
        world.run_until(second + 1.0)
    assert world.machine.snapshot().failbacks == 0
    assert world.connected_to() == SECONDARY
    world.health[PRIMARY] = Health.UP
    world.run_until(330.0)
    assert world.connected_to() == PRIMARY


def test_both_regions_down_backs_off_then_connects_when_one_returns() -> None:
    world = started_world()
    world.health[SECONDARY] = Health.REFUSING
    world.set_health(PRIMARY, Health.REFUSING)
    world.run_until(200.0)
    gaps = [b.start - a.start for a, b in zip(world.attempts[1:], world.attempts[2:], strict=False)]
    assert max(gaps) <= world.settings.backoff.max_s + 1.0
    assert len(world.attempts) < 40  # backed off, not hammering
    world.set_health(SECONDARY, Health.UP)
    world.run_until(200.0 + world.settings.backoff.max_s + 2.0)
    assert world.connected_to() == SECONDARY


def test_heartbeats_flow_while_connected() -> None:
    world = started_world()
    before = world.heartbeats
    world.run_until(15.0)
    assert world.heartbeats - before >= 9


@pytest.mark.parametrize("spread_s", [0.0, 0.5, 5.0])
def test_a_fleet_fails_back_spread_over_connect_spread_s(spread_s: float) -> None:
    """Devices that saw the primary return together must not fail back in
    one storm: each waits the window plus its own share of the spread."""
    times = []
    for seed in range(12):
        world = World(make_settings(connection__connect_spread_s=spread_s), seed=seed)
        world.start()
        world.run_until(5.0)
        world.set_health(PRIMARY, Health.REFUSING)
        world.run_until(7.0 + spread_s)  # reconnects are spread too
        assert world.connected_to() == SECONDARY
        restored = world.now
        world.set_health(PRIMARY, Health.UP)
        world.run_until(80.0)
        failback = next(a for a in world.attempts if a.why is Why.FAILBACK)
        times.append(failback.start)
    window = world.settings.failback.stability_window_s
    probe = world.settings.failback.probe_interval_s
    assert min(times) >= restored + window
    assert max(times) <= restored + probe + window + spread_s + 1.5
    if spread_s >= 5.0:
        assert max(times) - min(times) > 1.0  # spread, not one instant


def test_flapping_cname_never_makes_the_agent_flap() -> None:
    """Issue 12 item 5: the CNAME flips every second with TTL 1 for a
    minute; the agent follows at most a couple of moves and stays online."""
    world = started_world(dns__min_ttl_s=1.0)
    world.ttl = 1.0
    world.run_until(10.0)
    attempts = len(world.attempts)
    online = 0
    for second in range(10, 70):
        world.cname = SECONDARY if second % 2 else PRIMARY
        world.run_until(second + 0.5)
        online += world.connected_to() is not None
        world.run_until(second + 1.0)
    assert len(world.attempts) - attempts <= 3
    assert online >= 57
    # Once it stops flapping, the agent ends up where DNS points.
    world.cname = SECONDARY
    world.run_until(70.0 + world.settings.dns.max_move_hold_s + 30.0)
    assert world.connected_to() == SECONDARY


def test_dead_cname_target_never_leaves_the_working_region() -> None:
    world = started_world()
    attempts = len(world.attempts)
    world.cname = DEAD  # not in the world's health map: it never answers
    world.run_until(300.0)
    assert world.connected_to() == PRIMARY
    assert len(world.attempts) == attempts
    assert world.machine.snapshot().last_error is not None
    world.cname = SECONDARY  # DNS points somewhere real again: followed
    world.run_until(300.0 + world.ttl + 1.0)
    assert world.connected_to() == SECONDARY
