"""A small seeded random source for each virtual device (pure).

The core takes any `Rng` (the slice of `random.Random` it uses: `uniform`).
`random.Random` carries 2.5 KB of Mersenne Twister state, 2.5 GB for a
million devices; SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) carries one 64-bit integer
and passes BigCrush, which is plenty for jitter and spreads.
"""

from __future__ import annotations

from array import array

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_UNIT = 1.0 / (1 << 53)


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class SplitMix64:
    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def next64(self) -> int:
        self._state = z = (self._state + _GOLDEN) & _MASK
        return _mix(z)

    def random(self) -> float:
        """Uniform in [0, 1), 53 bits."""
        return (self.next64() >> 11) * _UNIT

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()


class SplitMix64Streams:
    """Many SplitMix64 streams, stream i drawing exactly what
    `SplitMix64(seeds[i])` draws, their states packed in one array: 8 bytes
    a stream rather than two objects."""

    __slots__ = ("_states",)

    def __init__(self, count: int) -> None:
        self._states = array("Q", [0]) * count

    def seed(self, i: int, seed: int) -> None:
        self._states[i] = seed & _MASK

    def random(self, i: int) -> float:
        """Stream i's next draw, uniform in [0, 1)."""
        z = (self._states[i] + _GOLDEN) & _MASK
        self._states[i] = z
        return (_mix(z) >> 11) * _UNIT
