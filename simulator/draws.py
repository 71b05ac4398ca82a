"""A scenario's random draws for each device, the same in every engine (pure).

A scenario file and its `seed` make one fleet. Device `index` draws its
connect spreads and backoff jitter from a generator of its own (the core's
`Rng`), and starts publishing at its own phase of the publish interval.
The local engine on real brokers (`real_run`), the Locust workers
(`worker_fleet`) and virtual time (`virtual_fleet`) all take both from
here, so a scenario run on the testbed and the same scenario in virtual
time are the same devices making the same draws, and differ only in what
the world answers them. That is what makes a real run and a virtual run
comparable figure by figure: with draws of their own they are two samples
of the fleet's randomness, and a figure as sensitive to it as the busiest
second's connect attempts went from 39 to 74/s over 29 seeds of one
blackhole scenario (bench/virtual_validation.py --seeds; WORLD_MODEL.md).

SplitMix64 (`virtual_rng`) keeps one integer per device, which a million
virtual devices need; `random.Random` would keep 2.5 KB each.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from iotdr.agent.core.settings import Settings
from iotdr.simulator.device import Device
from iotdr.simulator.scenario import Scenario, device_tls, for_device
from iotdr.simulator.virtual_rng import SplitMix64

_SEED_STRIDE = 0x100000001B3  # the FNV prime: seeds a and a+1 share no device


def device_draws(seed: int, index: int) -> tuple[int, float]:
    """Device `index`'s core RNG seed and its telemetry phase, as a fraction
    in [0, 1) of the publish interval."""
    mixer = SplitMix64(seed * _SEED_STRIDE + index)
    return mixer.next64(), mixer.random()


def device_seed(seed: int, index: int) -> int:
    """Device `index`'s core RNG seed: the same whatever the engine or sharding."""
    return device_draws(seed, index)[0]


def telemetry_phase(seed: int, index: int, interval_s: float) -> float:
    """When in the publish interval device `index` publishes, in seconds."""
    return device_draws(seed, index)[1] * interval_s


def fleet_devices(
    scenario: Scenario, settings: Settings, certificates: Path, indices: Iterable[int]
) -> list[tuple[Device, float]]:
    """The devices `indices` of the scenario's fleet for an engine on real
    brokers, each with its own draws, and its telemetry phase in seconds."""
    client_ids = scenario.fleet.client_ids()
    interval = scenario.fleet.publish_interval_s
    out = []
    for index in indices:
        client_id = client_ids[index]
        core_seed, phase = device_draws(scenario.seed, index)
        tls = device_tls(certificates, client_id)
        device = Device(client_id, for_device(settings, client_id, tls), SplitMix64(core_seed))
        out.append((device, phase * interval))
    return out
