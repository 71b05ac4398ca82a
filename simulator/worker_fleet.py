"""One Locust worker's share of the fleet, on paho under gevent.

The worker builds the same devices the local engine would for its slice of
client ids (same settings, same per-device random seed, so a device behaves
the same whichever engine or worker runs it), starts each at the instant
the fleet-wide ramp gives its index, and reports when they are connected.
Once the master names t=0 (a wall-clock instant, so every worker on every
machine measures from the same moment), it runs until `duration_s`, stops
producing, lets the backlog drain, and hands back every device's record
with times relative to t=0.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gevent

from iotdr.agent.core.events import Started
from iotdr.simulator.device import DeviceRecord
from iotdr.simulator.draws import fleet_devices
from iotdr.simulator.gevent_dns import GeventDns
from iotdr.simulator.paho_driver import (
    ConnectWatcher,
    GeventFleet,
    GeventInbox,
    PahoDriver,
    Telemetry,
)
from iotdr.simulator.real_run import LoopLag
from iotdr.simulator.scenario import Scenario, device_settings

_TICK_S = 0.25
_RAMP_GRACE_S = 30.0


def monotonic_of(wall: float) -> float:
    """This machine's monotonic clock at wall-clock instant `wall`."""
    return time.monotonic() + (wall - time.time())


class WorkerFleet:
    def __init__(
        self,
        scenario: Scenario,
        base_config: Mapping[str, Any],
        certificates: Path,
        shard: tuple[int, int],
        on_connect: ConnectWatcher | None = None,
    ) -> None:
        self.scenario = scenario
        fleet = scenario.fleet
        self.fleet = GeventFleet(
            inbox=GeventInbox(),
            dns=GeventDns(),
            telemetry=Telemetry(
                topic=fleet.topic,
                qos=fleet.qos,
                payload_bytes=fleet.payload_bytes,
                interval_s=fleet.publish_interval_s,
            ),
            on_connect=on_connect,
        )
        settings = device_settings(scenario.agent, base=base_config, source=scenario.source)
        start, stop = shard
        self.first_index = start
        # The same draws as the local engine and virtual time (draws.py).
        devices = fleet_devices(
            scenario, settings, certificates, range(start, min(stop, fleet.devices))
        )
        self.drivers = [PahoDriver(device, self.fleet) for device, _phase in devices]
        self._phases = [phase for _device, phase in devices]
        self._cpu_before = time.process_time()
        # The worker's own health, as the local engine reports its loop's:
        # when the hub runs callbacks late, devices see events late.
        self.lag = LoopLag()
        self._lag_watch: gevent.Greenlet[Any, None] | None = None

    def connected(self) -> int:
        return sum(1 for d in self.drivers if d.device.region is not None)

    def ramp_up(self, ramp_start_wall: float) -> int:
        """Starts each device at its place in the fleet-wide ramp; returns
        how many are connected when all are, or when the grace runs out."""
        rate = self.scenario.fleet.connect_rate_per_s
        start = monotonic_of(ramp_start_wall)
        self._lag_watch = gevent.spawn(_watch_lag, self.lag)
        for offset, driver in enumerate(self.drivers):
            at = start + (self.first_index + offset) / rate
            gevent.spawn_later(max(0.0, at - time.monotonic()), self._start, driver)
        end = start + (self.first_index + len(self.drivers)) / rate + _RAMP_GRACE_S
        while time.monotonic() < end and self.connected() < len(self.drivers):
            gevent.sleep(_TICK_S)
        for driver, phase in zip(self.drivers, self._phases, strict=True):
            driver.start_producing(phase)
        return self.connected()

    def _start(self, driver: PahoDriver) -> None:
        self.fleet.inbox.post(lambda: driver.feed(Started(now=time.monotonic())))

    def run(self, t0_wall: float) -> list[DeviceRecord]:
        """From t=0 to the end of the drain; every record relative to t=0."""
        scenario = self.scenario
        t0 = monotonic_of(t0_wall)
        gevent.sleep(max(0.0, t0 + scenario.duration_s - time.monotonic()))
        self.fleet.producing = False
        drain_end = t0 + scenario.duration_s + scenario.drain_s
        while time.monotonic() < drain_end and any(d.device.backlog for d in self.drivers):
            gevent.sleep(_TICK_S)
        records = [d.device.record.relative_to(t0) for d in self.drivers]
        if self._lag_watch is not None:
            self._lag_watch.kill(block=False)  # what follows is not the run
        self.stop()
        return records

    def stop(self) -> None:
        for driver in self.drivers:
            driver.stop()
        gevent.sleep(0.5)  # DISCONNECTs on their way
        self.fleet.inbox.close()

    def stats(self) -> dict[str, float | int | dict[str, float]]:
        return {
            "devices": len(self.drivers),
            "cpu_s": round(time.process_time() - self._cpu_before, 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "dns_queries": self.fleet.dns.queries,
            "loop_lag_ms": self.lag.summary(),
        }


def _watch_lag(lag: LoopLag, every_s: float = 0.1) -> None:
    while True:
        expected = time.monotonic() + every_s
        gevent.sleep(every_s)
        lag.samples.append(max(0.0, time.monotonic() - expected))
