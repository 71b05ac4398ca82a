"""A one-line progress bar on stderr for long work (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self._label, self._total, self._done = label, total, 0
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()  # workers report from many threads
        self._shown = self._stream.isatty()

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._done += count
            if self._shown:
                width = 30
                filled = width * self._done // max(self._total, 1)
                bar = "#" * filled + "-" * (width - filled)
                self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total}")
                self._stream.flush()

    def close(self) -> None:
        if self._shown:
            self._stream.write("\n")
