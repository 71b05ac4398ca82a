"""A large virtual fleet in many small processes, a few running at a time.

Why small. Virtual time is bound by memory as much as by instructions: a
grouped run visits its devices in the order their work comes due, which
is no order at all in memory, and each visit fetches the device's core,
record and engine state. A shard whose devices fit in its core's share of
the L3 cache does the same work for less: the million-device benchmark
took 53 to 61 s in 2 shards of 500,000 devices, 43 s in 16, 41 s in 32,
40 s in 64 and 38 s in 128 (8,000 devices each; 256 gave nothing more and
cost memory; bench/virtual_million.py, 2026-12-04). So a fleet is split
into shards of about `DEVICES_PER_SHARD` devices.

Why a few at a time. Shards are processes, and more of them running than
there are CPUs only take turns at the same caches (32 shards all at once
took longer than 2). Each shard holds a *turn* (a semaphore with one per
CPU) while it works: for its build and ramp-up, and again from t=0 to its
end. It gives its turn up while it waits for the others' ramp-ups, since
all shards agree on t=0 (the latest of their ramp-ups, as one fleet's
would be) before any goes on; nothing waits for anything else, so this
cannot deadlock.

What it costs. Each shard polices its own share of the account's CONNECT
quota (`VirtualFleet`), which the fleet as a whole sees exactly in
aggregate but not second by second: chance bunching in one shard is
refused while another has tokens to spare. With 100,000 devices storming
a 3,000/s quota, 1, 2 and 8 shards (shares of 3,000, 1,500 and 375/s)
gave RTO p50 23.41, 23.42 and 23.48 s, and 32 shards (94/s) 27.93 s; at
the quota rule's spread, throttled CONNECTs grew 2 % at 1,500/s, 8 % at
375/s, 21 % at 94/s and 70 % at 23/s. So no shard gets less than
`MIN_QUOTA_SHARE_PER_S`, except that a fleet may always use every CPU (as
before: two shards for a big fleet at AWS's default 500/s). `--shards`
overrides all this.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait
from typing import Any, Final

from iotdr.simulator.scenario import Scenario
from iotdr.simulator.virtual_fleet import VirtualFleet
from iotdr.simulator.virtual_world import WorldModel

DEVICES_PER_SHARD: Final = 8192
MIN_QUOTA_SHARE_PER_S: Final = 500.0
_BOARD_FIELDS: Final = 4  # per shard: stage, t (s from t=0), on the primary, on the secondary
_RAMPING, _WAITING, _RUNNING, _DONE = 0.0, 1.0, 2.0, 3.0


def default_shards(devices: int, quota_per_s: float | None, cpus: int | None = None) -> int:
    """How many shards a fleet of `devices` is split into (module docstring)."""
    cpus = cpus or os.cpu_count() or 1
    by_devices = math.ceil(devices / DEVICES_PER_SHARD)
    if quota_per_s is None or quota_per_s <= 0:
        return max(1, by_devices)
    by_quota = max(cpus, math.floor(quota_per_s / MIN_QUOTA_SHARE_PER_S))
    return max(1, min(by_devices, by_quota))


@dataclass(frozen=True, slots=True)
class ShardsProgress:
    """Where a sharded run stands, for a live display."""

    shards: int
    ramped: int  # shards through their ramp-up
    done: int
    t_s: float = 0.0  # the furthest shard's virtual time from t=0
    connected: dict[str, int] = field(default_factory=dict)  # by region, the shards' latest


# A shard: (scenario, model, shard, shards, agree, on_progress) -> its
# result and its fleet (virtual_run._run_shard).
RunShard = Callable[..., tuple[Any, VirtualFleet]]


class _Board:
    """What each shard last said of itself, in memory the processes share."""

    def __init__(self, context: Any, shards: int, regions: Sequence[str]) -> None:
        self.shards, self.regions = shards, list(regions)
        self.values = context.Array("d", shards * _BOARD_FIELDS, lock=False)

    def post(self, shard: int, stage: float, fleet: VirtualFleet | None = None) -> None:
        base = shard * _BOARD_FIELDS
        self.values[base] = stage
        if fleet is not None:
            t0 = fleet.t0 if fleet.t0 is not None else fleet.queue.now
            self.values[base + 1] = fleet.queue.now - t0
            for i, region in enumerate(fleet.regions[:2]):
                self.values[base + 2 + i] = region.connected

    def read(self) -> ShardsProgress:
        stages = [self.values[k * _BOARD_FIELDS] for k in range(self.shards)]
        at = [
            self.values[k * _BOARD_FIELDS + 1] for k in range(self.shards) if stages[k] >= _RUNNING
        ]
        connected = {
            region: round(sum(self.values[k * _BOARD_FIELDS + 2 + i] for k in range(self.shards)))
            for i, region in enumerate(self.regions)
        }
        return ShardsProgress(
            shards=self.shards,
            ramped=sum(1 for s in stages if s >= _WAITING),
            done=sum(1 for s in stages if s == _DONE),
            t_s=max(at, default=0.0),
            connected=connected,
        )


# What a shard process leaves to its end (below).
_HELD_UNTIL_EXIT: list[object] = []


def _child(  # noqa: PLR0917 - the shard's whole brief
    run_shard: RunShard,
    scenario: Scenario,
    model: WorldModel,
    shard: int,
    shards: int,
    pipe: Pipe,
    out: str,
    turns: Any,
    board: _Board,
) -> None:
    def agree(mine: float) -> float:
        board.post(shard, _WAITING)
        turns.release()  # waiting for the others' ramp-ups: a turn for them
        pipe.send(mine)
        agreed: float = pipe.recv()
        turns.acquire()
        board.post(shard, _RUNNING)
        return agreed

    def progress(fleet: VirtualFleet) -> None:
        board.post(shard, _RAMPING if fleet.t0 is None else _RUNNING, fleet)

    gc.disable()  # for good: the process ends with the shard
    turns.acquire()
    result, fleet = run_shard(scenario, model, shard, shards, agree, progress)
    with open(out, "wb") as file:
        pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
    board.post(shard, _DONE, fleet)
    turns.release()
    pipe.send(out)
    pipe.close()
    # A forked process ends in os._exit, which frees nothing one object at a
    # time; dropped here, the fleet's objects would be, one by one, while
    # the parent waits.
    _HELD_UNTIL_EXIT.append(fleet)


def run_sharded(  # noqa: PLR0917 - the run's whole brief
    run_shard: RunShard,
    scenario: Scenario,
    model: WorldModel,
    shards: int,
    regions: Sequence[str],
    on_progress: Callable[[ShardsProgress], None] | None = None,
    running: int | None = None,
) -> list[Any]:
    """Runs `shards` shard processes, at most `running` (default: one per
    CPU) at a time; returns their results in shard order. Each writes its
    result to a file and exits before the parent reads any: what the
    parent reads and the shards' cores are never all in memory at once."""
    context = multiprocessing.get_context("fork")
    turns = context.BoundedSemaphore(min(shards, running or os.cpu_count() or 1))
    board = _Board(context, shards, regions)
    pipes: list[Pipe] = []
    processes = []
    with tempfile.TemporaryDirectory(prefix="iotdr-virtual-") as scratch:
        for shard in range(shards):
            parent, child = context.Pipe()
            out = os.path.join(scratch, f"shard-{shard}.pickle")
            process = context.Process(
                target=_child,
                args=(run_shard, scenario, model, shard, shards, child, out, turns, board),
            )
            process.start()
            child.close()
            pipes.append(parent)
            processes.append(process)
        try:
            starts = _gather(pipes, board, on_progress)
            agreed = max(starts)
            for pipe in pipes:
                pipe.send(agreed)
            files = _gather(pipes, board, on_progress)
            for process in processes:
                process.join()
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        results = []
        for name in files:
            with open(name, "rb") as file:
                results.append(pickle.load(file))  # our own shard wrote it
    return results


def _gather(
    pipes: Sequence[Pipe], board: _Board, on_progress: Callable[[ShardsProgress], None] | None
) -> list[Any]:
    """One message from each pipe, in pipe order, showing progress meanwhile."""
    got: dict[int, Any] = {}
    index = {id(pipe): k for k, pipe in enumerate(pipes)}
    while len(got) < len(pipes):
        waiting = [pipe for k, pipe in enumerate(pipes) if k not in got]
        for ready in wait(waiting, timeout=0.25):
            assert isinstance(ready, Pipe)
            got[index[id(ready)]] = ready.recv()
        if on_progress is not None:
            on_progress(board.read())
    return [got[k] for k in range(len(pipes))]
