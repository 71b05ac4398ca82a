"""Results from native threads into the asyncio loop, in batches.

The CRT calls back on its own threads, thousands of times a second in a
storm. `call_soon_threadsafe` per callback would wake the loop each time;
the inbox wakes it once per batch and runs the batch in arrival order.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable


class Inbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: deque[Callable[[], None]] = deque()
        self._scheduled = False

    def post(self, item: Callable[[], None]) -> None:
        """From any thread: run `item` on the loop soon."""
        with self._lock:
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, deque()
            self._scheduled = False
        for item in items:
            item()
