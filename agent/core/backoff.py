"""Jittered, capped exponential backoff (pure: randomness is injected)."""

from __future__ import annotations

from typing import Protocol

from iotdr.agent.core.settings import BackoffSettings


class Rng(Protocol):
    """The slice of `random.Random` the core uses; pass a seeded instance."""

    def uniform(self, a: float, b: float) -> float: ...


class CoreRng:
    """What the core draws from: an `Rng` as a concrete class.

    Compiled (mypyc), a call through the `Rng` protocol is a generic
    Python method call; through a native class it is a direct C call,
    several times cheaper, and a virtual fleet draws some sixty times a
    device. The simulator's SplitMix64 subclasses this; any other `Rng`
    (the daemon's `random.Random`) is wrapped by `core_rng`."""

    __slots__ = ()

    def uniform(self, a: float, b: float) -> float:
        raise NotImplementedError


class _WrappedRng(CoreRng):
    __slots__ = ("_rng",)

    def __init__(self, rng: Rng) -> None:
        self._rng = rng

    def uniform(self, a: float, b: float) -> float:
        return self._rng.uniform(a, b)


def core_rng(rng: Rng) -> CoreRng:
    """`rng` itself if it already is a `CoreRng`, else `rng` wrapped: the
    same draws either way."""
    return rng if isinstance(rng, CoreRng) else _WrappedRng(rng)


def backoff_delay(settings: BackoffSettings, failed_rounds: int, rng: CoreRng) -> float:
    """Delay before the next round after `failed_rounds` rounds in which every
    endpoint failed: "equal jitter" (half fixed, half random), so a fleet that
    lost its region spreads out instead of retrying in lock step, while no
    device waits less than half the nominal delay."""
    if failed_rounds < 1:
        return 0.0
    exponent = min(failed_rounds - 1, 64)
    nominal = min(settings.max_s, settings.initial_s * settings.multiplier**exponent)
    return nominal / 2 + rng.uniform(0.0, nominal / 2)
