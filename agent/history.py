"""Failover counters kept across restarts in STATE_DIR/history.json (mode
0600, written atomically). Best effort: a file that is missing, damaged or
cannot be written costs the history, never the agent's run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from iotdr.agent.core.machine import History

log = logging.getLogger(__name__)

FILE_NAME = "history.json"


def load_history(state_dir: str) -> History:
    path = Path(state_dir) / FILE_NAME
    try:
        data = json.loads(path.read_bytes()[:4096])
        last = data.get("last_failover_s")
        return History(
            failovers=max(0, int(data["failovers"])),
            failbacks=max(0, int(data["failbacks"])),
            last_failover_s=None if last is None else float(last),
        )
    except FileNotFoundError:
        return History()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring %s (%s); failover counters start from 0", path, exc)
        return History()


class HistoryWriter:
    """Writes the counters when they change; complains once if it cannot."""

    def __init__(self, state_dir: str) -> None:
        self._path = Path(state_dir) / FILE_NAME
        self._complained = False

    def save(self, history: History) -> None:
        tmp = self._path.with_name(f".{FILE_NAME}.tmp")
        data = json.dumps(
            {
                "failovers": history.failovers,
                "failbacks": history.failbacks,
                "last_failover_s": history.last_failover_s,
            }
        ).encode()
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if not self._complained:
                self._complained = True
                log.warning("cannot keep failover counters in %s: %s", self._path, exc)
