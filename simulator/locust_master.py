"""The Locust master's side of a fleet run: the timeline and the report.

The master owns time. It splits the fleet over the workers that joined,
names the instant the ramp-up starts, waits until every worker reports its
devices connected, lets the fleet settle and names t=0 (a wall-clock
instant; every worker converts it to its own monotonic clock), applies each
fault of the timeline at its `at_s` and records when it took effect, then
collects every device's record through Locust's custom messages (never its
request statistics, which round response times) and writes the same report
as the local engine, with `"engine": "locust"` and the worker count.

A worker that dies is noticed through Locust's heartbeats: the master stops
waiting for it, and its devices are in the report as lost (no connection,
not recovered), listed under `locust.workers_lost`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event

from iotdr.simulator import wire
from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.expectations import expectations
from iotdr.simulator.real_run import Target
from iotdr.simulator.report import WrittenReport, write_report
from iotdr.simulator.results import Observed, RegionSecond, RunFacts
from iotdr.simulator.scenario import Fault, Scenario

log = logging.getLogger("iotdr.simulator")

_RAMP_LEAD_S = 1.0  # the ramp starts this long after the shards are sent
_T0_LEAD_S = 0.3  # t=0 is named this far ahead, so it reaches every worker first
_READY_GRACE_S = 60.0
_RESULTS_GRACE_S = 60.0
_OBSERVER_GRACE_S = 2.0
_POLL_S = 0.25
_FAULT_GRACE_S = 30.0

# Applies one fault; returns once it is in effect.
FaultApplier = Callable[[Fault], None]


@dataclass(slots=True)
class _Worker:
    node_id: str
    shard: tuple[int, int]
    ready: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    lost: bool = False
    faults_done: int = 0  # worker-side faults in effect there


@dataclass(slots=True)
class Conductor:
    runner: Any  # locust.runners.MasterRunner
    scenario: Scenario
    scenario_text: str
    target: Target
    out: Path
    apply_fault: FaultApplier
    progress: Callable[[str], None] = print
    workers: dict[str, _Worker] = field(default_factory=dict)
    _changed: gevent.event.Event = field(default_factory=gevent.event.Event)
    report: WrittenReport | None = None
    _ramp_start: float = 0.0
    _worker_faults: int = 0

    # -- messages from workers (Locust calls these in its receive loop) ---

    def on_ready(self, environment: Any, msg: Any) -> None:
        worker = self.workers.get(msg.node_id)
        if worker is not None:
            worker.ready = dict(msg.data)
            self._changed.set()

    def on_fault_done(self, environment: Any, msg: Any) -> None:
        worker = self.workers.get(msg.node_id)
        if worker is not None:
            worker.faults_done = max(worker.faults_done, int(msg.data["index"]) + 1)
            if msg.data.get("error"):
                self.progress(f"worker {msg.node_id}: fault not applied: {msg.data['error']}")
            self._changed.set()

    def on_results(self, environment: Any, msg: Any) -> None:
        worker = self.workers.get(msg.node_id)
        if worker is not None:
            worker.results = dict(msg.data)
            self._changed.set()

    # -- the run ----------------------------------------------------------

    def run(self) -> WrittenReport:
        scenario, target = self.scenario, self.target
        node_ids = sorted(str(node.id) for node in self.runner.clients.ready)
        if not node_ids:
            raise RuntimeError("no Locust workers joined")
        slices = wire.shards(scenario.fleet.devices, len(node_ids))
        self.workers = {n: _Worker(n, s) for n, s in zip(node_ids, slices, strict=True)}
        observed_out = self.out / "observed.json"
        observer = self._start_observer(observed_out) if scenario.observe else None
        try:
            ramp_start = self._ramp_start = time.time() + _RAMP_LEAD_S
            for index, worker in enumerate(self.workers.values()):
                self.runner.send_message(
                    wire.SHARD,
                    {
                        "scenario": self.scenario_text,
                        "source": scenario.source,
                        "devices": scenario.fleet.devices,
                        "base_config": dict(target.base_config),
                        "certificates": str(target.certificates),
                        "shard": list(worker.shard),
                        "ramp_start": ramp_start,
                        "index": index,
                    },
                    client_id=worker.node_id,
                )
            self.progress(
                f"{scenario.fleet.devices} devices over {len(self.workers)} workers: connecting"
            )
            ramp_s = scenario.fleet.devices / scenario.fleet.connect_rate_per_s
            self._wait(lambda w: w.ready is not None, ramp_start + ramp_s + _READY_GRACE_S)
            connected = sum(int(w.ready["connected"]) for w in self.workers.values() if w.ready)
            self.progress(f"{connected} devices connected; settling {scenario.fleet.settle_s:g} s")
            gevent.sleep(scenario.fleet.settle_s)
            t0_wall = time.time() + _T0_LEAD_S
            t0 = time.monotonic() + _T0_LEAD_S
            self.runner.send_message(wire.T0, {"t0": t0_wall})
            applied = self._timeline(t0)
            end = t0 + scenario.duration_s + scenario.drain_s
            gevent.sleep(max(0.0, end - time.monotonic()))
            self.progress("collecting results")
            self._wait(lambda w: w.results is not None, end + _RESULTS_GRACE_S)
            observed = self._stop_observer(observer, observed_out)
            observer = None
        finally:
            if observer is not None and observer.poll() is None:
                observer.kill()
        facts = self._facts(applied, t0_wall, observed)
        self.report = write_report(self.out, scenario, facts)
        return self.report

    def _alive(self, worker: _Worker) -> bool:
        node = self.runner.clients.get(worker.node_id)
        return node is not None and node.state != "missing"

    def _wait(
        self, done: Callable[[_Worker], bool], deadline: float, *, late_is_lost: bool = True
    ) -> None:
        """Until every worker is done, lost (Locust's heartbeats), or the deadline."""
        while True:
            for worker in self.workers.values():
                if not done(worker) and not worker.lost and not self._alive(worker):
                    worker.lost = True
                    self.progress(f"worker {worker.node_id} lost: its devices count as lost")
            if all(done(w) or w.lost for w in self.workers.values()):
                return
            if time.monotonic() >= deadline:
                for worker in self.workers.values():
                    if not done(worker) and not worker.lost and late_is_lost:
                        worker.lost = True
                        self.progress(f"worker {worker.node_id} did not answer in time")
                return
            self._changed.clear()
            self._changed.wait(_POLL_S)

    def worker_fault(self, fault: Fault, hosts: list[str]) -> None:
        """A fault every worker applies in its own namespace; returns once
        each live worker says it is in effect there (real AWS)."""
        index = self._worker_faults
        self._worker_faults += 1
        data = {"index": index, "fault": fault.fault, "region": fault.region, "hosts": hosts}
        self.runner.send_message(wire.FAULT, data)
        deadline = time.monotonic() + _FAULT_GRACE_S
        self._wait(lambda w: w.faults_done > index, deadline, late_is_lost=False)

    def _timeline(self, t0: float) -> list[tuple[float, Fault]]:
        applied = []
        for fault in self.scenario.timeline:
            gevent.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
            self.apply_fault(fault)
            applied.append((time.monotonic() - t0, fault))
            self.progress(f"{applied[-1][0]:.1f}s {fault.describe()}")
        gevent.sleep(max(0.0, t0 + self.scenario.duration_s - time.monotonic()))
        return applied

    def _facts(
        self, applied: list[tuple[float, Fault]], t0_wall: float, observed: Observed | None
    ) -> RunFacts:
        scenario = self.scenario
        client_ids = scenario.fleet.client_ids()
        records: list[DeviceRecord] = []
        lost_workers, lost_devices = [], 0
        per_worker = []
        for worker in self.workers.values():
            if worker.results is not None:
                records.extend(wire.record_from_wire(r) for r in worker.results["records"])
                per_worker.append(worker.results["stats"])
                continue
            lost_workers.append(worker.node_id)
            start, stop = worker.shard
            lost_devices += stop - start
            records.extend(DeviceRecord(client_id=cid) for cid in client_ids[start:stop])
        return RunFacts(
            records=records,
            duration_s=scenario.duration_s,
            faults=expectations(applied, self.target.role_to_region),
            connections_from=self._ramp_start - t0_wall,
            quota_per_s=scenario.limits.account_connects_per_s if scenario.limits else None,
            observed=observed,
            region_seconds=self._region_seconds(t0_wall),
            mode="real",
            extra={
                "engine": "locust",
                "workers": len(self.workers),
                "locust": {
                    "workers_lost": lost_workers,
                    "devices_lost": lost_devices,
                    "per_worker": per_worker,
                },
            },
        )

    # -- the cloud side (the testbed's regions) ---------------------------

    def _start_observer(self, out: Path) -> subprocess.Popen[str] | None:
        testbed = self.target.testbed
        if testbed is None:
            return None
        argv = [
            sys.executable, "-m", "iotdr.simulator.cloud_observer",
            "--testbed", str(testbed.directory),
            "--topic", self.scenario.fleet.topic.format(client_id="+"),
            "--out", str(out),
        ]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise RuntimeError("the cloud observer did not subscribe")
        return process

    def _stop_observer(self, process: subprocess.Popen[str] | None, out: Path) -> Observed | None:
        if process is None:
            return None
        gevent.sleep(_OBSERVER_GRACE_S)
        process.terminate()
        process.wait(30)
        data = json.loads(out.read_text())
        received = {client: frozenset(seqs) for client, seqs in data["received"].items()}
        return Observed(distinct=int(data["distinct"]), total=int(data["total"]), received=received)

    def _region_seconds(self, t0_wall: float) -> list[RegionSecond]:
        testbed = self.target.testbed
        if testbed is None or self.scenario.limits is None:
            return []
        return [
            RegionSecond(
                second=int(counts.unix_second - t0_wall),
                region=region,
                accepted=counts.accepted,
                refused=counts.refused,
                refused_client=counts.refused_client,
            )
            for role, region in self.target.role_to_region.items()
            for counts in testbed.connect_counts(role)
        ]
