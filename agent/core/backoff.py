"""Jittered, capped exponential backoff (pure: randomness is injected)."""

from __future__ import annotations

from typing import Protocol

from iotdr.agent.core.settings import BackoffSettings


class Rng(Protocol):
    """The slice of `random.Random` the core uses; pass a seeded instance."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(settings: BackoffSettings, failed_rounds: int, rng: Rng) -> float:
    """Delay before the next round after `failed_rounds` rounds in which every
    endpoint failed: "equal jitter" (half fixed, half random), so a fleet that
    lost its region spreads out instead of retrying in lock step, while no
    device waits less than half the nominal delay."""
    if failed_rounds < 1:
        return 0.0
    exponent = min(failed_rounds - 1, 64)
    nominal = min(settings.max_s, settings.initial_s * settings.multiplier**exponent)
    return nominal / 2 + rng.uniform(0.0, nominal / 2)
