"""Virtual time: one queue of timestamped work, no asyncio, no wall clock.

Everything a device has coming (its timer, its CONNECT reaching a region,
an answer) is an entry `(at, seq, kind, a, b)` in that device's own small
heap; ties are broken by device, then by `seq`, the order work was
scheduled, so a run is a pure function of its inputs and seed. Tuples of
ints and floats keep a million pending entries small and fast to compare.

A device's core arms and cancels named timers (`ArmTimer` replaces an
earlier arming). `DeviceTimers` keeps, per device and timer, the `seq` of
the entry that is the live arming; the entry a new arming or a cancel
replaces is removed from the device's heap, a few entries long.
"""

from __future__ import annotations

import heapq
from array import array

from iotdr.agent.core.events import TimerName

TIMERS: tuple[TimerName, ...] = tuple(TimerName)
TIMER_INDEX: dict[TimerName, int] = {timer: i for i, timer in enumerate(TIMERS)}

Entry = tuple[float, int, int, int, int]  # at, seq, kind, a, b


class FleetQueue:
    """Each device's pending work in a small heap of its own, and one heap of
    wake-ups saying which device has the earliest work.

    An entry is `(at, seq, kind, a, b)` in its device's heap; `wakes` holds
    `(at, device)` for each device's earliest entry (and, harmlessly, stale
    ones a later push overtook, which the runner skips). The fleet's runner
    (`VirtualFleet._run`) pops a wake-up and works through that device's
    entries for as long as order allows: every entry in global
    `(at, device, seq)` order, or, grouped, a device's entries that touch
    nothing shared one after another, so a million devices' cores are not
    visited in turn for each event.

    While the runner works on a device (`active`), that device's own
    pushes need no wake-up, and its entries may be removed: the runner
    pushes its wake-up when it leaves it.
    """

    __slots__ = ("_seq", "active", "local", "now", "popped", "visits", "wakes")

    def __init__(self, devices: int) -> None:
        self.local: list[list[Entry]] = [[] for _ in range(devices)]
        self.wakes: list[tuple[float, int]] = []
        self._seq = 0
        self.active = -1
        self.now = 0.0
        self.popped = 0  # entries worked through
        self.visits = 0  # wake-ups that led to a device's entries

    def push(self, device: int, at: float, kind: int, a: int = 0, b: int = 0) -> int:
        """Schedules work for `device` at virtual time `at`; returns its seq."""
        self._seq += 1
        heap = self.local[device]
        entry = (at, self._seq, kind, a, b)
        heapq.heappush(heap, entry)
        # (By seq, not `is`: mypyc boxes the tuple afresh for the heap.)
        if device != self.active and heap[0][1] == self._seq:
            heapq.heappush(self.wakes, (at, device))
        return self._seq

    def remove(self, device: int, seq: int) -> None:
        """Drops the active device's entry `seq` (a re-armed or cancelled
        timer), so it holds no memory and costs no pop."""
        assert device == self.active  # its wake-up is pushed when the runner leaves it
        heap = self.local[device]
        for i, entry in enumerate(heap):
            if entry[1] == seq:
                last = heap.pop()
                if i < len(heap):
                    heap[i] = last
                    heapq.heapify(heap)
                return

    def __len__(self) -> int:
        return sum(len(heap) for heap in self.local)


class DeviceTimers:
    """Which entry is the live arming of each (device, timer): its seq, 0 if
    the timer is not armed."""

    __slots__ = ("_armed",)

    def __init__(self, devices: int) -> None:
        self._armed = array("q", [0]) * (devices * len(TIMERS))

    def arm(self, device: int, timer: int, seq: int) -> int:
        """Records the new arming; returns the one it replaces (0: none)."""
        slot = device * len(TIMERS) + timer
        old = self._armed[slot]
        self._armed[slot] = seq
        return old

    def cancel(self, device: int, timer: int) -> int:
        """Disarms; returns the arming cancelled (0: none)."""
        return self.arm(device, timer, 0)
