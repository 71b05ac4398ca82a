"""The virtual clock's calendar queue pops exactly what one heap pops."""

from __future__ import annotations

import heapq
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from iotdr.simulator.virtual_clock import Entry, EventQueue

# An operation: push work `delay` after the current time (negative: in the
# past, which a late handler may do), or pop the next entry due by `delay`.
operations = st.lists(
    st.tuples(
        st.sampled_from(["push", "push", "pop_until", "pop"]),
        st.one_of(
            st.floats(min_value=-0.05, max_value=3.0),
            st.sampled_from([0.0, 0.01, 0.02, math.inf]),  # ties and bucket edges
        ),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.sampled_from([0.001, 0.01, 1.0]))
def test_pops_in_the_order_of_one_heap(ops: list[tuple[str, float]], width: float) -> None:
    queue = EventQueue(width)
    heap: list[Entry] = []
    seq = 0
    for op, delay in ops:
        now = queue.now
        if op == "push":
            at = max(0.0, now + delay)
            seq += 1
            assert queue.push(at, 1, seq % 7, seq, 0) == seq
            heapq.heappush(heap, (at, seq, 1, seq % 7, seq, 0))
        elif op == "pop":
            if heap:
                assert queue.pop() == heapq.heappop(heap)
        else:
            end = now + abs(delay)
            due = heapq.heappop(heap) if heap and heap[0][0] <= end else None
            assert queue.pop_until(end) == due
        assert len(queue) == len(heap)
        assert queue.peek_time() == (heap[0][0] if heap else None)
    while heap:
        assert queue.pop() == heapq.heappop(heap)
    assert queue.pop_until(math.inf) is None
