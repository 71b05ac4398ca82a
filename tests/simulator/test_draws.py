"""Every engine gives device i of a scenario the same random draws.

A real run and a virtual run of one scenario are compared figure by figure
(bench/virtual_validation.py); with draws of their own they were two
samples of the fleet's randomness, and the busiest second's connect
attempts of one blackhole scenario differed by 22 % for no other reason.
These tests feed the same events to the cores the engines build and
compare what they decide (each device's first connect, after its own
share of `connect_spread_s`), and compare the telemetry phases.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from iotdr.agent.core.backoff import CoreRng, core_rng
from iotdr.agent.core.commands import ArmTimer, Command
from iotdr.agent.core.events import DnsAnswered, Started, TimerName
from iotdr.agent.core.machine import Machine
from iotdr.simulator.draws import device_draws, fleet_devices, telemetry_phase
from iotdr.simulator.scenario import Scenario, load_scenario
from iotdr.simulator.virtual_fleet import WORLD_SALT, VirtualFleet
from iotdr.simulator.virtual_rng import SplitMix64
from iotdr.simulator.virtual_run import the_testbed_regions, virtual_settings
from iotdr.simulator.virtual_world import TESTBED
from iotdr.testbed.topology import REGIONS, TXT_DEFAULT

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 40


def _scenario(seed: int = 1) -> Scenario:
    sc = load_scenario(ROOT / "bench" / "validation" / "blackhole.yaml").with_devices(DEVICES)
    return replace(sc, seed=seed)


def _first_connect_at(machine: Machine) -> float:
    """When the core schedules its first connect after the first DNS answer
    (its own draw from `connection.connect_spread_s`)."""
    machine.handle(Started(now=0.0))
    commands: list[Command] = machine.handle(
        DnsAnswered(now=0.0, target=REGIONS["primary"].host, ttl=5.0, txt=TXT_DEFAULT)
    )
    timers = [c.at for c in commands if isinstance(c, ArmTimer) and c.timer is TimerName.RECONNECT]
    assert len(timers) == 1, commands
    return timers[0]


def _virtual(sc: Scenario, shard: int = 0, shards: int = 1) -> VirtualFleet:
    return VirtualFleet(
        sc, virtual_settings(sc), the_testbed_regions(), TESTBED, shard=shard, shards=shards
    )


def test_real_and_virtual_devices_make_the_same_draws() -> None:
    sc = _scenario()
    real = fleet_devices(sc, virtual_settings(sc), Path("certificates"), range(DEVICES))
    virtual = _virtual(sc)
    real_connects = [_first_connect_at(device.machine) for device, _ in real]
    virtual_connects = [_first_connect_at(machine) for machine in virtual.machines]
    assert real_connects == virtual_connects
    assert [phase for _, phase in real] == list(virtual.phase)
    # Not one draw for all: the devices spread over the 50 s and the interval.
    assert len(set(real_connects)) == DEVICES
    assert max(real_connects) - min(real_connects) > 25.0
    interval = sc.fleet.publish_interval_s
    assert all(0.0 <= phase < interval for _, phase in real)
    assert len({phase for _, phase in real}) == DEVICES


def test_a_shard_and_a_worker_slice_draw_what_the_whole_fleet_draws() -> None:
    sc = _scenario()
    whole = [_first_connect_at(m) for m in _virtual(sc).machines]
    odd = _virtual(sc, shard=1, shards=2)
    assert [_first_connect_at(m) for m in odd.machines] == whole[1::2]
    assert list(odd.phase) == [telemetry_phase(sc.seed, i, 1.0) for i in range(1, DEVICES, 2)]
    slice_ = fleet_devices(sc, virtual_settings(sc), Path("certificates"), range(10, 20))
    assert [_first_connect_at(d.machine) for d, _ in slice_] == whole[10:20]


def test_another_seed_is_another_fleet() -> None:
    first = [_first_connect_at(m) for m in _virtual(_scenario(1)).machines]
    second = [_first_connect_at(m) for m in _virtual(_scenario(2)).machines]
    assert not set(first) & set(second)


def test_each_device_draws_from_the_world_on_a_stream_of_its_own() -> None:
    """Device i's world draws are SplitMix64 seeded from its core seed,
    whatever order the engine works through devices in."""
    sc = _scenario()
    fleet = _virtual(sc)
    own = [SplitMix64(device_draws(sc.seed, i)[0] ^ WORLD_SALT) for i in range(DEVICES)]
    for _ in range(3):
        for i in reversed(range(DEVICES)):
            assert fleet.devices[i].draw() == own[i].random()


def _textbook_splitmix64(seed: int, draws: int) -> list[int]:
    """SplitMix64 as its paper writes it, on Python's unbounded integers."""
    mask, state, out = (1 << 64) - 1, seed & ((1 << 64) - 1), []
    for _ in range(draws):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_splitmix64_on_halves_draws_what_the_textbook_formula_draws(seed: int) -> None:
    expected = _textbook_splitmix64(seed, 4)
    own, unit = SplitMix64(seed), SplitMix64(seed)
    assert [own.next64() for _ in range(4)] == expected
    assert [unit.random() for _ in range(4)] == [(z >> 11) / 2**53 for z in expected]


def test_a_device_rng_is_a_core_rng_the_core_uses_as_it_is() -> None:
    rng = SplitMix64(7)
    assert isinstance(rng, CoreRng)  # so the compiled core calls it natively
    assert core_rng(rng) is rng
