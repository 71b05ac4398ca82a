"""Virtual time: one queue of timestamped work, no asyncio, no wall clock.

Everything a device has coming (its timer, its CONNECT reaching a region,
an answer) is an `Entry` (at, seq, kind, a, b) in that device's own short
list, kept sorted; ties are broken by device, then by `seq`, the order work
was scheduled, so a run is a pure function of its inputs and seed. A device
has a handful of entries at most, so a sorted list beats a heap, and a
native class (compiled: unboxed fields, compared in C) beats tuples, whose
every comparison and element goes through Python objects.

A device's core arms and cancels named timers (`ArmTimer` replaces an
earlier arming). The entry a new arming or a cancel replaces is found in
the device's heap, a few entries long, and removed (`FleetQueue.remove`),
so every timer entry left is a live arming.
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Final

from iotdr.agent.core.events import TimerName

TIMERS: Final[tuple[TimerName, ...]] = tuple(TimerName)
TIMER_INDEX: Final[dict[TimerName, int]] = {timer: i for i, timer in enumerate(TIMERS)}

Wake = tuple[float, int]  # at, device


class Entry:
    """Work a device has coming at virtual time `at`: `kind` says what, `a`
    and `b` are the kind's own (an attempt, a timer, a code); `seq` orders
    entries due at the same time as they were scheduled."""

    __slots__ = ("a", "at", "b", "kind", "seq")

    def __init__(self, at: float, seq: int, kind: int, a: int, b: int) -> None:
        self.at = at
        self.seq = seq
        self.kind = kind
        self.a = a
        self.b = b

    def key(self) -> tuple[float, int, int, int, int]:
        return (self.at, self.seq, self.kind, self.a, self.b)

    def __repr__(self) -> str:
        return f"Entry{self.key()!r}"


class WakeQueue:
    """Wake-ups `(at, device)`, popped in that order.

    A calendar queue: a wake-up waits in the bucket of virtual time it falls
    in (`width` seconds each), unsorted, until its bucket comes due and is
    sorted once; a wake-up for the bucket being worked through is inserted
    in order. A million devices keep a million wake-ups pending, and one
    heap of that size spends most of each push and pop on cache misses,
    some twenty levels of them; and a heap per bucket still pays its levels
    on every pop where thousands of devices wake within the same
    milliseconds (a region killed, every connection lost at once), where a
    sorted bucket pops by moving an index. The order is exactly one heap's
    (a test pops both side by side).
    """

    __slots__ = ("_buckets", "_current", "_current_key", "_keys", "_next", "_size", "_width")

    def __init__(self, width: float = 0.005) -> None:
        self._width = width
        self._buckets: dict[int, list[Wake]] = {}
        self._keys: list[int] = []  # a heap of the keys in _buckets
        self._current: list[Wake] = []  # the bucket being worked through, sorted
        self._next = 0  # the first wake-up in _current not yet popped
        self._current_key = -(2**62)
        self._size = 0

    def push(self, at: float, device: int) -> None:
        self._size += 1
        wake = (at, device)
        key = _FAR if at >= _FAR_S else math.floor(at / self._width)
        if self._next < len(self._current):
            if key == self._current_key:
                bisect.insort(self._current, wake, lo=self._next)
                return
            if key < self._current_key:
                self._put_back()  # `first` looked ahead past where the run stopped
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [wake]
            heapq.heappush(self._keys, key)
        else:
            bucket.append(wake)

    def _put_back(self) -> None:
        """Returns what is left of the current bucket to the calendar."""
        self._buckets[self._current_key] = self._current[self._next :]
        heapq.heappush(self._keys, self._current_key)
        self._current, self._next = [], 0

    def first(self) -> Wake:
        """The next wake-up, left in place; `NO_WAKE` (device -1) if there
        is none. (Not None: compiled, a plain tuple is returned as two C
        values, an optional one as a new tuple object on every call.)"""
        current = self._current
        if self._next < len(current):
            return current[self._next]
        keys = self._keys
        if not keys:
            return NO_WAKE
        key = heapq.heappop(keys)
        bucket = self._buckets.pop(key)
        bucket.sort()
        self._current, self._current_key, self._next = bucket, key, 0
        return bucket[0]

    def pop(self) -> None:
        """Drops the wake-up `first` returned."""
        self._next += 1
        self._size -= 1
        if self._next >= 4096:  # a large bucket: let go of what was popped
            del self._current[: self._next]
            self._next = 0

    def __len__(self) -> int:
        return self._size


NO_WAKE: Final[Wake] = (math.inf, -1)
_FAR_S: Final = 1e15  # beyond any run: one bucket for infinity and its like
_FAR: Final = 2**62


class FleetQueue:
    """Each device's pending work in a short sorted list of its own, and a
    calendar of wake-ups saying which device has the earliest work.

    A device's entries are kept latest first, so its earliest is last
    (`first`, `pop`: no shifting), behind `_END`, an entry due never that
    stays at the front of every list: a list that emptied on every pop
    would give its memory back and ask for it again at the next push.
    `wakes` holds `(at, device)` for each device's earliest entry (and,
    harmlessly, stale ones a later push overtook, which the runner skips).
    The fleet's runner (`VirtualFleet._run`) pops a wake-up and works
    through that device's entries for as long as order allows: every
    entry in global `(at, device, seq)` order, or, grouped, a device's
    entries that touch nothing shared one after another, so a million
    devices' cores are not visited in turn for each event.

    While the runner works on a device (`active`), that device's own
    pushes need no wake-up, and its entries may be removed: the runner
    pushes its wake-up when it leaves it.
    """

    __slots__ = ("_seq", "active", "local", "now", "popped", "visits", "wakes")

    def __init__(self, devices: int) -> None:
        self.local: list[list[Entry]] = [[_END] for _ in range(devices)]
        self.wakes = WakeQueue()
        self._seq = 0
        self.active = -1
        self.now = 0.0
        self.popped = 0  # entries worked through
        self.visits = 0  # wake-ups that led to a device's entries

    def push(self, device: int, at: float, kind: int, a: int = 0, b: int = 0) -> int:
        """Schedules work for `device` at virtual time `at`; returns its seq."""
        self._seq += 1
        entries = self.local[device]
        # Latest first: the new entry goes after every later one. It has the
        # highest seq, so it follows those due at the same time.
        i = len(entries)
        while i > 1 and entries[i - 1].at <= at:
            i -= 1
        entries.insert(i, Entry(at, self._seq, kind, a, b))
        if device != self.active and i == len(entries) - 1:
            self.wakes.push(at, device)
        return self._seq

    def first(self, device: int) -> Entry | None:
        """The device's earliest entry, left in place; None if it has none."""
        entries = self.local[device]
        return entries[-1] if len(entries) > 1 else None

    def pop(self, device: int) -> Entry:
        """Takes the device's earliest entry (it must have one)."""
        entries = self.local[device]
        assert len(entries) > 1
        return entries.pop()

    def remove(self, device: int, kind: int, a: int) -> bool:
        """Drops the active device's entry of `kind` with `a` (a re-armed or
        cancelled timer), so it holds no memory and costs no pop; False if
        it has none."""
        assert device == self.active  # its wake-up is pushed when the runner leaves it
        entries = self.local[device]
        for i in range(1, len(entries)):
            entry = entries[i]
            if entry.kind == kind and entry.a == a:
                del entries[i]
                return True
        return False

    def __len__(self) -> int:
        return sum(len(entries) - 1 for entries in self.local)


_END: Final = Entry(math.inf, 0, -1, 0, 0)  # the front of every device's list
