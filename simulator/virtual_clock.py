"""Virtual time: one heap of timestamped work, no asyncio, no wall clock.

Everything that happens in a virtual run (a device's timer, a CONNECT
reaching a region, a fault) is an entry `(at, seq, kind, device, a, b)` in
one heap; `seq` breaks ties in the order work was scheduled, so a run is a
pure function of its inputs and seed. Tuples of ints and floats keep a
million pending entries small and fast to compare.

A device's core arms and cancels named timers (`ArmTimer` replaces an
earlier arming). Rather than deleting heap entries, `DeviceTimers` keeps,
per device and timer, the `seq` of the entry that is currently valid; a
popped timer entry whose `seq` no longer matches was cancelled or
re-armed and is skipped.
"""

from __future__ import annotations

import heapq
from array import array

from iotdr.agent.core.events import TimerName

TIMERS: tuple[TimerName, ...] = tuple(TimerName)
TIMER_INDEX: dict[TimerName, int] = {timer: i for i, timer in enumerate(TIMERS)}

Entry = tuple[float, int, int, int, int, int]


class EventQueue:
    """A min-heap of (at, seq, kind, device, a, b)."""

    __slots__ = ("_heap", "_seq", "now", "popped")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = 0
        self.now = 0.0
        self.popped = 0

    def push(self, at: float, kind: int, device: int = -1, a: int = 0, b: int = 0) -> int:
        """Schedules work at virtual time `at`; returns its seq."""
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, device, a, b))
        return self._seq

    def pop(self) -> Entry:
        entry = heapq.heappop(self._heap)
        self.now = entry[0]
        self.popped += 1
        return entry

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


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
