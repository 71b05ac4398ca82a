"""The fleet queue: every device with work pending has a wake-up no later
than its earliest entry, and each device's own heap pops in (at, seq) order."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from iotdr.simulator.virtual_clock import FleetQueue

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
            heap = queue.local[active]
            if heap:
                heapq.heappush(queue.wakes, (heap[0][0], active))
        queue.active = -1
        for d, heap in enumerate(queue.local):
            if heap:
                assert any(w == (heap[0][0], d) for w in queue.wakes)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=50))
def test_a_device_heap_pops_in_time_then_push_order(times: list[float]) -> None:
    queue = FleetQueue(1)
    seqs = [queue.push(0, at, kind=2, a=i) for i, at in enumerate(times)]
    popped = [heapq.heappop(queue.local[0]) for _ in times]
    assert popped == sorted(popped)
    assert [e[1] for e in popped] == [s for _, s in sorted(zip(times, seqs, strict=True))]
    assert len(queue) == 0


def test_removing_an_entry_keeps_the_rest_in_order() -> None:
    queue = FleetQueue(1)
    queue.active = 0
    seqs = [queue.push(0, at, kind=1) for at in (3.0, 1.0, 2.0, 0.5)]
    queue.remove(0, seqs[1])
    queue.remove(0, 999)  # not there: nothing happens
    assert [heapq.heappop(queue.local[0])[0] for _ in range(3)] == [0.5, 2.0, 3.0]
