"""Failover benchmark: the iotdr agent against a mosquitto bridge, same
testbed, same faults, same run.

For each scenario, several runs, each on a fresh testbed, default failover
settings for both systems. A message source publishes every 0.1 s (the
agent's heartbeat; for the bridge, a local publisher into the bridging
broker) and observers in both regions timestamp arrivals, so every figure
is "fault applied -> first message published after the fault seen in the
right region" (each payload carries its publish time, `ts`: a restored
region replays QoS 1 messages it saved before the kill, which say nothing
about when the system came back):

- hard-down: primary broker SIGKILLed -> first message on the secondary
- failback: primary restored -> first message on the primary again
- blackhole: primary's packets dropped -> first message on the secondary
- cname: CNAME moved to the secondary -> first message there
- flaps: with the system on the secondary, the primary is restored and
  killed every second for --flap-seconds; flaps = connections the primary
  broker accepted from the system meanwhile (its own log counts them)

The bridge is configured as a gateway operator would: `address primary
secondary`, `round_robin false`, otherwise mosquitto's defaults.

Usage (root): python bench/failover.py [--runs 5] [--cap 30] [--scenarios hard-down,cname]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.netns import inside
from iotdr.testbed.observer import ObservedMessage, Observer
from iotdr.testbed.testbed import Testbed

TOPIC = "iotdr/bench/heartbeat"
INTERVAL_S = 0.1
BRIDGE_PORT = 1884


class System:
    """Something that carries messages from the gateway to a region."""

    name = "system"
    client_id = ""

    def start(self, tb: Testbed, workdir: Path) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Agent(System):
    name = "iotdr agent"

    def start(self, tb: Testbed, workdir: Path) -> None:
        self.client_id = tb.info.device.client_id
        self.runner = AgentRunner(
            tb, overrides={"heartbeat": {"topic": TOPIC, "interval_s": INTERVAL_S}}
        ).start()
        self.runner.wait_connected("region-a")

    def stop(self) -> None:
        self.runner.stop()


class Bridge(System):
    name = "mosquitto bridge"

    def start(self, tb: Testbed, workdir: Path) -> None:
        info = tb.info
        self.client_id = info.device.client_id
        conf = workdir / "bridge.conf"
        conf.write_text(
            "user root\npersistence false\nlog_dest stderr\nlog_type all\n"
            f"listener {BRIDGE_PORT} 127.0.0.1\nallow_anonymous true\n"
            "connection iotdr-bridge\n"
            f"address {info.primary.host}:{info.primary.port} "
            f"{info.secondary.host}:{info.secondary.port}\n"
            "round_robin false\n"
            f"remote_clientid {self.client_id}\n"
            f"bridge_cafile {info.ca.cert}\n"
            f"bridge_certfile {info.device.cert}\n"
            f"bridge_keyfile {info.device.key}\n"
            f"topic {TOPIC} out 1\n"
        )
        self.process = tb.spawn(["mosquitto", "-c", str(conf)], workdir / "bridge.log")
        self.publisher = Publisher(tb.info.netns)
        self.publisher.start()

    def stop(self) -> None:
        self.publisher.stop()
        self.process.terminate()
        self.process.wait(10)


class Publisher(threading.Thread):
    """Publishes into the bridging broker every INTERVAL_S, at QoS 1."""

    def __init__(self, netns: str) -> None:
        super().__init__(daemon=True)
        self._stop_event = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
        self._netns = netns

    def run(self) -> None:
        with inside(self._netns):
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._client.connect("127.0.0.1", BRIDGE_PORT)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        self._client.loop_start()
        seq = 0
        while not self._stop_event.wait(INTERVAL_S):
            seq += 1
            payload = json.dumps({"seq": seq, "ts": time.time()})
            self._client.publish(TOPIC, payload, qos=1)

    def stop(self) -> None:
        self._stop_event.set()
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class Run:
    tb: Testbed
    system: System
    observers: dict[str, Observer] = field(default_factory=dict)

    def first_after(self, role: str, since: float, cap: float) -> float | None:
        """Seconds from `since` (monotonic, taken just before a fault) to
        the first message published after it that arrived in `role`."""
        observer = self.observers[role]
        published_after = time.time() - (time.monotonic() - since)

        def fresh(m: ObservedMessage) -> bool:
            return (
                m.topic == TOPIC and m.received_at > since and _published_at(m) >= published_after
            )

        def arrived(ms: Sequence[ObservedMessage]) -> bool:
            return any(fresh(m) for m in ms)

        if not observer.wait_for(arrived, max(0.0, since + cap - time.monotonic())):
            return None
        return min(m.received_at for m in observer.messages if fresh(m)) - since

    def accepted_connections(self, region_name: str) -> int:
        log = self.tb.directory / "logs" / f"{region_name}.log"
        needle = f" as {self.system.client_id} "
        return sum(
            1
            for line in log.read_text(errors="replace").splitlines()
            if "New client connected" in line and needle in line
        )


def _published_at(message: ObservedMessage) -> float:
    """The publish time in the payload (the agent's heartbeat and the
    bridge's publisher both write `ts`); -inf if there is none."""
    try:
        return float(json.loads(message.payload)["ts"])
    except (ValueError, KeyError, TypeError):
        return float("-inf")


Scenario = Callable[[Run, float], dict[str, float | None]]


def hard_down(run: Run, cap: float) -> dict[str, float | None]:
    t0 = time.monotonic()
    run.tb.kill_region("primary")
    failover = run.first_after("secondary", t0, cap)
    time.sleep(1.0)
    t1 = time.monotonic()
    run.tb.restore_region("primary")
    assert run.observers["primary"].wait_connected(30.0)
    failback = run.first_after("primary", t1, cap + 30.0)
    return {"hard-down": failover, "failback": failback}


def blackhole(run: Run, cap: float) -> dict[str, float | None]:
    t0 = time.monotonic()
    run.tb.blackhole("primary")
    return {"blackhole": run.first_after("secondary", t0, cap)}


def cname(run: Run, cap: float) -> dict[str, float | None]:
    t0 = time.monotonic()
    run.tb.set_cname(run.tb.info.secondary.host)
    return {"cname": run.first_after("secondary", t0, cap)}


def make_flaps(seconds: int) -> Scenario:
    def flaps(run: Run, cap: float) -> dict[str, float | None]:
        t0 = time.monotonic()
        run.tb.kill_region("primary")
        if run.first_after("secondary", t0, cap) is None:
            return {"flaps": None}
        before = run.accepted_connections(run.tb.info.primary.name)
        for _ in range(seconds // 2):
            run.tb.restore_region("primary")
            time.sleep(1.0)
            run.tb.kill_region("primary")
            time.sleep(1.0)
        return {"flaps": float(run.accepted_connections(run.tb.info.primary.name) - before)}

    return flaps


def one_run(system: System, scenario: Scenario, cap: float) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory(prefix="iotdr-bench-") as tmp:
        tb = Testbed.up(Path(tmp) / "tb")
        try:
            run = Run(tb, system)
            for role in ("primary", "secondary"):
                run.observers[role] = Observer(tb.info, role, [TOPIC]).start()
                assert run.observers[role].wait_connected(30.0)
            system.start(tb, Path(tmp))
            if run.first_after("primary", time.monotonic(), 30.0) is None:
                raise RuntimeError(f"{system.name}: no traffic on the primary at start")
            time.sleep(2.0)  # steady state
            try:
                return scenario(run, cap)
            finally:
                system.stop()
                for observer in run.observers.values():
                    observer.stop()
        finally:
            tb.down()


def summary(values: list[float | None], cap: float, unit: str) -> str:
    done = [v for v in values if v is not None]
    missed = len(values) - len(done)
    if unit == "count":
        return f"{int(statistics.median(done))} (max {int(max(done))})" if done else "n/a"
    if not done:
        return f"> {cap:.0f} s (all {missed})"
    text = f"{statistics.median(done):.2f} s (max {max(done):.2f} s)"
    return text + (f", {missed} over {cap:.0f} s" if missed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cap", type=float, default=30.0, help="give up after this many s")
    parser.add_argument("--flap-seconds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--scenarios",
        default="hard-down,blackhole,cname,flaps",
        help="comma-separated subset (hard-down also measures failback)",
    )
    args = parser.parse_args()

    every: dict[str, tuple[Scenario, int]] = {
        "hard-down": (hard_down, args.runs),
        "blackhole": (blackhole, args.runs),
        "cname": (cname, args.runs),
        "flaps": (make_flaps(args.flap_seconds), 1),
    }
    scenarios = [every[name] for name in args.scenarios.split(",")]
    results: dict[str, dict[str, list[float | None]]] = {}
    for system in (Agent(), Bridge()):
        figures: dict[str, list[float | None]] = {}
        for scenario, runs in scenarios:
            for i in range(runs):
                out = one_run(system, scenario, args.cap)
                for key, value in out.items():
                    figures.setdefault(key, []).append(value)
                print(f"{system.name:>17} run {i + 1}: {out}", file=sys.stderr, flush=True)
        results[system.name] = figures

    agent, bridge = results["iotdr agent"], results["mosquitto bridge"]
    print(f"\nFailover benchmark: {args.runs} runs per scenario, fresh testbed each, defaults\n")
    print(f"{'scenario':<10} {'iotdr agent':>28} {'mosquitto bridge':>30} {'ratio':>8}")
    for key in ("hard-down", "blackhole", "cname", "failback", "flaps"):
        if key not in agent or key not in bridge:
            continue
        unit = "count" if key == "flaps" else "s"
        ratio = ""
        a = [v for v in agent[key] if v is not None]
        b = [v if v is not None else args.cap for v in bridge[key]]
        if unit == "s" and a and b:
            ratio = f"{statistics.median(b) / statistics.median(a):.1f}x"
            if any(v is None for v in bridge[key]):
                ratio = ">" + ratio
        print(
            f"{key:<10} {summary(agent[key], args.cap, unit):>28} "
            f"{summary(bridge[key], args.cap, unit):>30} {ratio:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
