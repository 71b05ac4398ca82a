"""The fleet queue: every device with work pending has a wake-up at its
earliest entry, each device's own entries pop in (at, seq) order, and the
calendar of wake-ups pops exactly what one heap pops."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from iotdr.simulator.virtual_clock import NO_WAKE, FleetQueue, Wake, WakeQueue


def _drain(wakes: WakeQueue) -> list[Wake]:
    out = []
    while (wake := wakes.first())[1] >= 0:
        wakes.pop()
        out.append(wake)
    return out


# A push: (device, at); the device being worked on (-1: none) at that moment.
pushes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4),
        st.one_of(st.floats(min_value=0.0, max_value=5.0), st.sampled_from([0.0, 1.0])),
        st.integers(min_value=-1, max_value=4),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(pushes)
def test_a_device_with_work_has_a_wake_up_by_its_earliest_entry(
    ops: list[tuple[int, float, int]],
) -> None:
    queue = FleetQueue(5)
    for device, at, active in ops:
        queue.active = active
        queue.push(device, at, kind=1)
        if active >= 0:  # the runner pushes the active device's wake-up when it leaves it
            queue.active = -1
            earliest = queue.first(active)
            if earliest is not None:
                queue.wakes.push(earliest.at, active)
        queue.active = -1
    pending = set(_drain(queue.wakes))
    for d in range(5):
        earliest = queue.first(d)
        if earliest is not None:
            assert (earliest.at, d) in pending


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=50))
def test_a_device_pops_in_time_then_push_order(times: list[float]) -> None:
    queue = FleetQueue(1)
    seqs = [queue.push(0, at, kind=2, a=i) for i, at in enumerate(times)]
    popped = [queue.pop(0).key() for _ in times]
    assert popped == sorted(popped)  # what a heap of (at, seq, ...) tuples pops
    assert [e[1] for e in popped] == [s for _, s in sorted(zip(times, seqs, strict=True))]
    assert len(queue) == 0
    assert queue.first(0) is None


def test_removing_an_entry_keeps_the_rest_in_order() -> None:
    queue = FleetQueue(1)
    queue.active = 0
    for i, at in enumerate((3.0, 1.0, 2.0, 0.5)):
        queue.push(0, at, kind=1, a=i)
    assert queue.remove(0, 1, 1)
    assert not queue.remove(0, 1, 9)  # not there: nothing happens
    assert not queue.remove(0, 2, 0)  # another kind
    assert [queue.pop(0).at for _ in range(3)] == [0.5, 2.0, 3.0]


# An operation: push a wake-up `delay` after the last one popped (negative:
# before it, as a fault's push may be), or pop the next one.
operations = st.lists(
    st.tuples(
        st.sampled_from(["push", "push", "pop"]),
        st.one_of(
            st.floats(min_value=-0.05, max_value=3.0),
            st.sampled_from([0.0, 0.01, 0.02, 1e16]),  # ties, bucket edges, far away
        ),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.sampled_from([0.001, 0.01, 1.0]))
def test_wake_ups_pop_in_the_order_of_one_heap(
    ops: list[tuple[str, float, int]], width: float
) -> None:
    wakes = WakeQueue(width)
    heap: list[Wake] = []
    now = 0.0
    for op, delay, device in ops:
        if op == "push":
            wakes.push(max(0.0, now + delay), device)
            heapq.heappush(heap, (max(0.0, now + delay), device))
        elif heap:
            first = wakes.first()
            assert first == heap[0]
            wakes.pop()
            now = heapq.heappop(heap)[0]
        else:
            assert wakes.first() == NO_WAKE
        assert len(wakes) == len(heap)
    assert _drain(wakes) == sorted(heap)
