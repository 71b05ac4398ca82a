"""A scenario on real brokers: the fleet, its timeline, its measurements.

Phases, all on one asyncio loop inside the testbed's network namespace:
1. ramp-up: devices start at `fleet.connect_rate_per_s`, each through its
   own core (so the agent's connect spread applies), until all are
   connected;
2. telemetry starts (each device at its own phase), then `fleet.settle_s`;
3. t=0: the timeline's faults are applied at their `at_s` (on a worker
   thread; a fault's time is when the testbed reports it in effect);
4. at `duration_s` telemetry stops and queued messages get `drain_s` to be
   acknowledged; then every device stops.
Everything measured is handed to `results` relative to t=0.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iotdr.agent.core.endpoints import region_of
from iotdr.agent.core.events import Started
from iotdr.agent.core.settings import Settings
from iotdr.simulator.crt_sessions import CrtPlumbing
from iotdr.simulator.draws import fleet_devices
from iotdr.simulator.driver import DeviceDriver, FleetContext, Telemetry
from iotdr.simulator.expectations import Expectation, expectations
from iotdr.simulator.inbox import Inbox
from iotdr.simulator.probes import Prober
from iotdr.simulator.progress import Progress, Snapshot
from iotdr.simulator.results import Observed, RegionSecond, RunFacts
from iotdr.simulator.scenario import Fault, Scenario, device_settings
from iotdr.simulator.shared_dns import SharedDns
from iotdr.simulator.testbed_faults import apply_fault
from iotdr.testbed.testbed import Testbed

_TICK_S = 0.25
_RAMP_GRACE_S = 30.0
_OBSERVER_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the fleet connects and how to reach it."""

    base_config: Mapping[str, Any]  # endpoints and dns, as in agent.yaml
    role_to_region: Mapping[str, str]
    certificates: Path  # ID.pem, ID.key and ca.pem per device
    testbed: Testbed | None
    crt_threads: int = 1


def testbed_target(testbed: Testbed, certificates: Path, *, crt_threads: int = 1) -> Target:
    agent = _read_yaml(testbed.info.agent_config)
    base: dict[str, Any] = {key: agent[key] for key in ("endpoints", "dns") if key in agent}
    info = testbed.info
    roles = {"primary": info.primary.name, "secondary": info.secondary.name}
    return Target(
        base_config=base,
        role_to_region=roles,
        certificates=certificates,
        testbed=testbed,
        crt_threads=crt_threads,
    )


def endpoints_target(config: Path, certificates: Path, *, crt_threads: int = 1) -> Target:
    """Real endpoints from an agent configuration file (its endpoints and
    dns sections); regions are named by their host names' region label."""
    agent = _read_yaml(config)
    base: dict[str, Any] = {key: agent[key] for key in ("endpoints", "dns") if key in agent}
    settings = device_settings({}, base=base, source=str(config))
    roles = {
        role: region_of(endpoint.host) or endpoint.host
        for role, endpoint in (("primary", settings.primary), ("secondary", settings.secondary))
        if endpoint is not None
    }
    roles.setdefault("primary", "primary")
    roles.setdefault("secondary", "secondary")
    return Target(
        base_config=base,
        role_to_region=roles,
        certificates=certificates,
        testbed=None,
        crt_threads=crt_threads,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _start(driver: DeviceDriver) -> None:
    driver.feed(Started(now=time.monotonic()))


class LoopLag:
    """How late the event loop runs a callback: the simulator's own health.
    When it lags, devices see events late and the figures measure the
    simulator, not the fleet; the report says so."""

    def __init__(self, every_s: float = 0.1) -> None:
        self._every_s = every_s
        self.samples: list[float] = []

    async def watch(self) -> None:
        while True:
            expected = time.monotonic() + self._every_s
            await asyncio.sleep(self._every_s)
            self.samples.append(max(0.0, time.monotonic() - expected))

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        pick = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {"p99": round(pick * 1000, 1), "max": round(ordered[-1] * 1000, 1)}


class RealRun:
    def __init__(self, scenario: Scenario, target: Target, progress: Progress) -> None:
        self._scenario = scenario
        self._target = target
        self._progress = progress
        self._drivers: list[DeviceDriver] = []
        self._applied: list[tuple[float, Fault]] = []
        self._phase = "starting"
        self._t0: float | None = None

    def settings(self) -> Settings:
        return device_settings(
            self._scenario.agent, base=self._target.base_config, source=self._scenario.source
        )

    async def run(self, observer_out: Path | None) -> RunFacts:
        scenario, target = self._scenario, self._target
        loop = asyncio.get_running_loop()
        fleet = FleetContext(
            loop=loop,
            inbox=Inbox(loop),
            plumbing=CrtPlumbing(target.crt_threads),
            dns=SharedDns(),
            prober=Prober(),
            telemetry=Telemetry(
                topic=scenario.fleet.topic,
                qos=scenario.fleet.qos,
                payload_bytes=scenario.fleet.payload_bytes,
                interval_s=scenario.fleet.publish_interval_s,
            ),
        )
        settings = self.settings()
        devices = fleet_devices(
            scenario, settings, target.certificates, range(scenario.fleet.devices)
        )  # the same draws as in virtual time (draws.py)
        for device, _phase in devices:
            self._drivers.append(DeviceDriver(device, fleet))
        observer = self._start_observer(observer_out) if observer_out else None
        ticker = loop.create_task(self._show_progress())
        lag = LoopLag()
        lag_task = loop.create_task(lag.watch())
        cpu_before = time.process_time()
        try:
            ramp_started = time.monotonic()
            await self._ramp_up(loop)
            for driver, (_device, phase) in zip(self._drivers, devices, strict=True):
                driver.start_producing(phase)
            self._phase = "settling"
            await asyncio.sleep(scenario.fleet.settle_s)
            t0 = self._t0 = time.monotonic()
            t0_wall = time.time()
            self._phase = "running"
            await self._timeline(loop, t0)
            fleet.producing = False
            self._phase = "draining"
            await self._drain(t0 + scenario.duration_s + scenario.drain_s)
            records = [d.device.record.relative_to(t0) for d in self._drivers]
            ticker.cancel()  # the last table shows the fleet as it ended the run
            lag_task.cancel()  # what follows is not the run
            self._phase = "stopping"
            for driver in self._drivers:
                driver.stop()
            await loop.run_in_executor(None, self._close_all)
            observed = await self._stop_observer(observer, observer_out)
        finally:
            ticker.cancel()
            lag_task.cancel()
            fleet.prober.close()
            if observer is not None and observer.poll() is None:
                observer.kill()
        return RunFacts(
            records=records,
            duration_s=scenario.duration_s,
            faults=self._expectations(),
            connections_from=ramp_started - t0,
            quota_per_s=scenario.limits.account_connects_per_s if scenario.limits else None,
            observed=observed,
            region_seconds=self._region_seconds(t0_wall),
            mode="real",
            extra={
                "simulator": {
                    "crt_threads": target.crt_threads,
                    "dns_queries": fleet.dns.queries,
                    "cpu_s": round(time.process_time() - cpu_before, 2),
                    "max_rss_mb": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                    ),
                    "loop_lag_ms": lag.summary(),
                }
            },
        )

    def _close_all(self) -> None:
        for driver in self._drivers:
            driver.close()

    # -- phases ----------------------------------------------------------

    async def _ramp_up(self, loop: asyncio.AbstractEventLoop) -> None:
        self._phase = "connecting the fleet"
        rate = self._scenario.fleet.connect_rate_per_s
        start = time.monotonic()
        for index, driver in enumerate(self._drivers):
            at = start + index / rate
            loop.call_at(at, _start, driver)
        deadline = start + len(self._drivers) / rate + _RAMP_GRACE_S
        while time.monotonic() < deadline:
            if all(d.device.region is not None for d in self._drivers):
                return
            await asyncio.sleep(_TICK_S)
        missing = sum(1 for d in self._drivers if d.device.region is None)
        self._progress.say(f"ramp-up: {missing} devices not connected; starting anyway")

    async def _timeline(self, loop: asyncio.AbstractEventLoop, t0: float) -> None:
        testbed = self._target.testbed
        for fault in self._scenario.timeline:
            await asyncio.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
            if testbed is None:
                raise RuntimeError("faults need a testbed")
            await loop.run_in_executor(None, apply_fault, testbed, fault)
            self._applied.append((time.monotonic() - t0, fault))
        await asyncio.sleep(max(0.0, t0 + self._scenario.duration_s - time.monotonic()))

    async def _drain(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if all(d.device.backlog == 0 for d in self._drivers):
                return
            await asyncio.sleep(_TICK_S)

    def _expectations(self) -> list[Expectation]:
        return expectations(self._applied, self._target.role_to_region)

    # -- the cloud side --------------------------------------------------

    def _start_observer(self, out: Path) -> subprocess.Popen[str]:
        testbed = self._target.testbed
        assert testbed is not None
        topic = self._scenario.fleet.topic.format(client_id="+")
        argv = [
            sys.executable,
            "-m",
            "iotdr.simulator.cloud_observer",
            "--testbed",
            str(testbed.directory),
            "--topic",
            topic,
            "--out",
            str(out),
        ]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise RuntimeError("the cloud observer did not subscribe")
        return process

    async def _stop_observer(
        self, process: subprocess.Popen[str] | None, out: Path | None
    ) -> Observed | None:
        if process is None or out is None:
            return None
        await asyncio.sleep(_OBSERVER_GRACE_S)
        process.terminate()
        await asyncio.get_running_loop().run_in_executor(None, process.wait, 30)
        data = json.loads(out.read_text())
        received = {client: frozenset(seqs) for client, seqs in data["received"].items()}
        return Observed(distinct=int(data["distinct"]), total=int(data["total"]), received=received)

    def _region_seconds(self, t0_wall: float) -> list[RegionSecond]:
        testbed = self._target.testbed
        if testbed is None or self._scenario.limits is None:
            return []
        out = []
        for role, region in self._target.role_to_region.items():
            for counts in testbed.connect_counts(role):
                out.append(
                    RegionSecond(
                        second=int(counts.unix_second - t0_wall),
                        region=region,
                        accepted=counts.accepted,
                        refused=counts.refused,
                        refused_client=counts.refused_client,
                    )
                )
        return out

    # -- progress --------------------------------------------------------

    async def _show_progress(self) -> None:
        regions = sorted(self._target.role_to_region.values())
        last_attempts = 0
        while True:
            attempts = sum(len(d.device.record.attempts) for d in self._drivers)
            connected = dict.fromkeys(regions, 0)
            for driver in self._drivers:
                region = driver.device.region
                if region is not None:
                    connected[region] = connected.get(region, 0) + 1
            t = time.monotonic() - self._t0 if self._t0 is not None else 0.0
            self._progress.show(
                Snapshot(
                    phase=self._phase,
                    t_s=t,
                    devices=len(self._drivers),
                    connected=connected,
                    attempts_last_s=int((attempts - last_attempts) / 1.0),
                    acknowledged=sum(d.device.record.acknowledged for d in self._drivers),
                    backlog=sum(d.device.backlog for d in self._drivers),
                    faults=[f"{at:.1f}s {f.describe()}" for at, f in self._applied],
                )
            )
            last_attempts = attempts
            await asyncio.sleep(1.0)
