"""Live progress of a run in the terminal (rich), or nothing with -q."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass(slots=True)
class Snapshot:
    phase: str
    t_s: float
    devices: int
    connected: Mapping[str, int]
    # None: not known while the run goes on (a virtual run accounts its
    # telemetry at the end, virtual_telemetry), shown as such, not as 0.
    attempts_last_s: int | None
    acknowledged: int | None
    backlog: int | None
    faults: list[str] = field(default_factory=list)


class Progress:
    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet
        self._console = Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if not self._quiet:
            self._live = Live(console=self._console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)

    def show(self, snapshot: Snapshot) -> None:
        if self._live is None:
            return
        table = Table(title=f"iotdr simulate — {snapshot.phase}", show_header=True)
        table.add_column("t (s)", justify="right")
        table.add_column("devices", justify="right")
        for region in sorted(snapshot.connected):
            table.add_column(f"on {region}", justify="right")
        table.add_column("CONNECT/s", justify="right")
        table.add_column("acked", justify="right")
        table.add_column("queued", justify="right")
        table.add_row(
            f"{snapshot.t_s:7.1f}",
            str(snapshot.devices),
            *(str(snapshot.connected[r]) for r in sorted(snapshot.connected)),
            *(
                _shown(n)
                for n in (snapshot.attempts_last_s, snapshot.acknowledged, snapshot.backlog)
            ),
        )
        if snapshot.faults:
            table.caption = "faults: " + "; ".join(snapshot.faults[-4:])
        self._live.update(table)

    def say(self, line: str) -> None:
        if not self._quiet:
            self._console.print(line)


def _shown(count: int | None) -> str:
    return "-" if count is None else str(count)
