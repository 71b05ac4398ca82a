"""Virtual time: one queue of timestamped work, no asyncio, no wall clock.

Everything that happens in a virtual run (a device's timer, a CONNECT
reaching a region, a fault) is an entry `(at, seq, kind, device, a, b)` in
one queue, popped in (at, seq) order; `seq` breaks ties in the order work
was scheduled, so a run is a pure function of its inputs and seed. Tuples
of ints and floats keep a million pending entries small and fast to
compare.

A device's core arms and cancels named timers (`ArmTimer` replaces an
earlier arming). Rather than deleting heap entries, `DeviceTimers` keeps,
per device and timer, the `seq` of the entry that is currently valid; a
popped timer entry whose `seq` no longer matches was cancelled or
re-armed and is skipped.
"""

from __future__ import annotations

import heapq
import math
from array import array

from iotdr.agent.core.events import TimerName

TIMERS: tuple[TimerName, ...] = tuple(TimerName)
TIMER_INDEX: dict[TimerName, int] = {timer: i for i, timer in enumerate(TIMERS)}

Entry = tuple[float, int, int, int, int, int]


class EventQueue:
    """Entries (at, seq, kind, device, a, b), popped in (at, seq) order.

    A calendar queue: an entry waits in the bucket of virtual time it falls
    in (`width` seconds each), unsorted; only the bucket being worked
    through is a heap. A million devices keep over a million entries
    pending, and one heap of that size spends most of each pop on cache
    misses; buckets of a few thousand do not. The order is exactly the one
    heap's (a test pops both side by side).
    """

    __slots__ = (
        "_buckets",
        "_current",
        "_current_key",
        "_keys",
        "_seq",
        "_size",
        "_width",
        "now",
        "popped",
    )

    def __init__(self, width: float = 0.01) -> None:
        self._width = width
        self._buckets: dict[int, list[Entry]] = {}
        self._keys: list[int] = []  # a heap of the keys in _buckets
        self._current: list[Entry] = []  # a heap: the bucket being worked through
        self._current_key = 0
        self._seq = 0
        self._size = 0
        self.now = 0.0
        self.popped = 0

    def push(self, at: float, kind: int, device: int = -1, a: int = 0, b: int = 0) -> int:
        """Schedules work at virtual time `at`; returns its seq."""
        self._seq += 1
        self._size += 1
        entry = (at, self._seq, kind, device, a, b)
        key = _FAR if at >= _FAR_S else math.floor(at / self._width)
        if self._current and key <= self._current_key:
            heapq.heappush(self._current, entry)  # the bucket being worked through
            return self._seq
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [entry]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(entry)
        return self._seq

    def _load(self) -> bool:
        """Makes the earliest bucket current; False if nothing is pending."""
        keys = self._keys
        while not self._current:
            if not keys:
                return False
            key = heapq.heappop(keys)
            bucket = self._buckets.pop(key)
            heapq.heapify(bucket)
            self._current, self._current_key = bucket, key
        return True

    def pop(self) -> Entry:
        if not self._current and not self._load():
            raise IndexError("pop from an empty EventQueue")
        entry = heapq.heappop(self._current)
        self._size -= 1
        self.now = entry[0]
        self.popped += 1
        return entry

    def pop_until(self, end: float) -> Entry | None:
        """The next entry due at or before `end`, or None."""
        current = self._current
        if not current:
            if not self._load():
                return None
            current = self._current
        if current[0][0] > end:
            return None
        entry = heapq.heappop(current)
        self._size -= 1
        self.now = entry[0]
        self.popped += 1
        return entry

    def peek_time(self) -> float | None:
        if not self._current and not self._load():
            return None
        return self._current[0][0]

    def __len__(self) -> int:
        return self._size


_FAR_S = 1e15  # beyond any run: one bucket for infinity and its like
_FAR = 2**62


class DeviceTimers:
    """Which heap entry is the live arming of each (device, timer)."""

    __slots__ = ("_armed",)

    def __init__(self, devices: int) -> None:
        self._armed = array("q", [0]) * (devices * len(TIMERS))

    def arm(self, device: int, timer: int, seq: int) -> None:
        self._armed[device * len(TIMERS) + timer] = seq

    def cancel(self, device: int, timer: int) -> None:
        self._armed[device * len(TIMERS) + timer] = 0

    def fire(self, device: int, timer: int, seq: int) -> bool:
        """True (and disarmed) if `seq` is the timer's live arming."""
        slot = device * len(TIMERS) + timer
        if self._armed[slot] != seq:
            return False
        self._armed[slot] = 0
        return True
