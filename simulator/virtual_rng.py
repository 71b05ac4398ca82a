"""A small seeded random source for each virtual device (pure).

The core takes any `Rng` (the slice of `random.Random` it uses: `uniform`).
This one is a `CoreRng`, the concrete class the core calls natively.
`random.Random` carries 2.5 KB of Mersenne Twister state, 2.5 GB for a
million devices; SplitMix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) carries 64 bits of state
and passes BigCrush, which is plenty for jitter and spreads.

The 64-bit arithmetic is done on two 32-bit halves, and each product on
16-bit pieces, so no intermediate value reaches 2**62. Typed `i64`,
compiled with mypyc (`compiled_build`), every step is one machine
instruction on a C int64 that can never overflow, instead of a Python
long allocated on the heap (those were a sixth of a virtual run's
instructions); interpreted, `i64` is `int` and the values are the same.
The draws are exactly SplitMix64's:
`tests/simulator/test_draws.py` checks them against the textbook formula.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import i64  # interpreted, i64(x) is int(x)

from iotdr.agent.core.backoff import CoreRng

_M32: Final[i64] = 0xFFFFFFFF
_M16: Final[i64] = 0xFFFF
# The golden-ratio increment and the two multipliers, as 32-bit halves.
_GOLDEN_HI: Final[i64] = 0x9E3779B9
_GOLDEN_LO: Final[i64] = 0x7F4A7C15
_MUL1_HI: Final[i64] = 0xBF58476D
_MUL1_LO: Final[i64] = 0x1CE4E5B9
_MUL2_HI: Final[i64] = 0x94D049BB
_MUL2_LO: Final[i64] = 0x133111EB
_UNIT: Final = 1.0 / (1 << 53)


def _low32_times(x: i64, c: i64) -> i64:
    """(x * c) mod 2**32 for 32-bit x and c."""
    return ((x & _M16) * c + ((((x >> 16) * c) & _M16) << 16)) & _M32


def _times(hi: i64, lo: i64, c_hi: i64, c_lo: i64) -> tuple[i64, i64]:
    """(hi:lo * c_hi:c_lo) mod 2**64, as halves."""
    p0 = (lo & _M16) * c_lo  # lo * c_lo, in two pieces of under 2**48
    p1 = (lo >> 16) * c_lo
    t = p0 + ((p1 & _M16) << 16)
    carry = (t >> 32) + (p1 >> 16)  # the high half of lo * c_lo
    high = carry + _low32_times(lo, c_hi) + _low32_times(hi, c_lo)
    return high & _M32, t & _M32


def _shift_xor(hi: i64, lo: i64, k: i64) -> tuple[i64, i64]:
    """z ^ (z >> k) for 0 < k < 32."""
    return hi ^ (hi >> k), lo ^ (((lo >> k) | (hi << (32 - k))) & _M32)


def _advance(hi: i64, lo: i64) -> tuple[i64, i64]:
    """The state plus the golden increment, mod 2**64."""
    lo += _GOLDEN_LO
    return (hi + _GOLDEN_HI + (lo >> 32)) & _M32, lo & _M32


def _mix(hi: i64, lo: i64) -> tuple[i64, i64]:
    hi, lo = _shift_xor(hi, lo, 30)
    hi, lo = _times(hi, lo, _MUL1_HI, _MUL1_LO)
    hi, lo = _shift_xor(hi, lo, 27)
    hi, lo = _times(hi, lo, _MUL2_HI, _MUL2_LO)
    return _shift_xor(hi, lo, 31)


def _halves(seed: int) -> tuple[i64, i64]:
    """The seed mod 2**64, as halves (on Python ints: a seed may be any size)."""
    return i64((seed >> 32) & 0xFFFFFFFF), i64(seed & 0xFFFFFFFF)


def _unit(hi: i64, lo: i64) -> float:
    """The top 53 bits of hi:lo as a fraction in [0, 1)."""
    return float((hi << 21) | (lo >> 11)) * _UNIT  # under 2**53: exact


class SplitMix64(CoreRng):
    """A `CoreRng`, so that the compiled core calls `uniform` directly."""

    __slots__ = ("_hi", "_lo")

    _hi: i64
    _lo: i64

    def __init__(self, seed: int) -> None:
        self._hi, self._lo = _halves(seed)

    def _next(self) -> tuple[i64, i64]:
        self._hi, self._lo = _advance(self._hi, self._lo)
        return _mix(self._hi, self._lo)

    def next64(self) -> int:
        hi, lo = self._next()
        return (int(hi) << 32) | int(lo)

    def random(self) -> float:
        """Uniform in [0, 1), 53 bits."""
        hi, lo = self._next()
        return _unit(hi, lo)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()
