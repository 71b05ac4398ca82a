"""Gateway bridge benchmark: throughput through the durable spool, the
agent's memory and CPU, and a zero-loss run through failover, failback and
a SIGKILL of the agent.

- throughput: N messages (~70 bytes) published as fast as the local broker
  takes them; msg/s = N / (first publish -> last message seen in region-a).
  The agent runs pinned to one core (taskset) with the default durable
  spool (synchronous=FULL). The peer, in the same run, is a mosquitto
  bridge carrying the same topics from its own listener to region-a.
  Also printed: messages per second of the agent's own CPU time, the
  capacity of one core, which holds when a noisy machine starves the load
  generators; and the same run with the local session over MQTT 5.
- resources: the agent's RSS and PSS (smaps_rollup) and CPU (utime+stime
  from /proc) over 30 s idle (connected, no traffic, no heartbeat) and
  during the throughput run; and the RSS of the agent without the bridge.
- zero loss: 100,000 messages at a steady rate while the primary is killed
  (failover), restored (failback) and the agent is SIGKILLed and restarted;
  prints published, delivered, lost and duplicated. Publishing pauses for
  the instant of the region's SIGKILL until the observers have caught up:
  a broker killed mid-stream loses messages it already acknowledged to the
  agent but had not yet delivered (548 of 10,000 at 2,000/s, seen with an
  observer 0.27 s behind); that is the region's loss, past the PUBACK that
  ends the agent's responsibility, exactly as with AWS IoT.

Usage (root): python bench/bridge.py [--messages 50000] [--zero-loss 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.observer import Observer
from iotdr.testbed.publisher import LocalPublisher
from iotdr.testbed.testbed import Testbed

TOPICS = ["sensors/temperature", "sensors/pressure"]
BRIDGE: dict[str, Any] = {
    "bridge": {"enabled": True, "to_cloud": [{"filter": "sensors/#", "add_prefix": "dt/gw1/"}]},
    "heartbeat": {"topic": None},
}
TICKS = os.sysconf("SC_CLK_TCK")
AGENT_CORE = 0


# The Python that runs the agent (--agent-python): by default this venv,
# which holds the dev tools too; a regular install (the .deb's venv, or
# `pip install iotdr` without extras) loads fewer packages into the agent.
agent_python = sys.executable


def _runner(tb: Testbed, overrides: dict[str, Any]) -> AgentRunner:
    agent = AgentRunner(tb, overrides=overrides)
    agent.python = agent_python
    return agent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mib(pid: int, field: str = "Rss") -> float:
    """Rss or Pss of the whole process in MiB (smaps_rollup). PSS shares
    each library page among the processes that map it."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ranges(seqs: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7": where messages went missing."""
    out: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        out.append(f"{start}-{prev}" if start != prev else str(start))
        if seq is not None:
            start = prev = seq
    return ", ".join(out[:10]) + (" ..." if len(out) > 10 else "")


class Tally:
    """What the observers saw, parsed incrementally: re-parsing every
    message on each look starved the observers' threads of the GIL."""

    def __init__(self, observers: dict[str, Observer]) -> None:
        self.observers = observers
        self.seen: set[tuple[str, int]] = set()
        self.total = 0
        self._parsed = dict.fromkeys(observers, 0)

    def update(self) -> set[tuple[str, int]]:
        for region, observer in self.observers.items():
            messages = observer.messages
            for message in messages[self._parsed[region] :]:
                data = json.loads(message.payload)
                self.seen.add((data["topic"], int(data["seq"])))
                self.total += 1
            self._parsed[region] = len(messages)
        return self.seen


LOAD_CORE = 1 - AGENT_CORE


def c_load(tb: Testbed, port: int, count: int) -> float:
    """Publish `count` messages with the C client mosquitto_pub into the
    broker at `port` and count them in region-a with mosquitto_sub (a Python
    load generator would be the bottleneck); seconds from the first publish
    to the last arrival."""
    info = tb.info
    region = info.primary
    pin = ["taskset", "-c", str(LOAD_CORE)]
    counter = subprocess.Popen(
        tb.netns_argv(
            [
                *pin,
                "mosquitto_sub",
                "-h",
                region.host,
                "-p",
                str(region.port),
                "--cafile",
                str(info.ca.cert),
                "--cert",
                str(info.observer.cert),
                "--key",
                str(info.observer.key),
                "-i",
                "bench-counter",
                "-t",
                "dt/#",
                "-q",
                "1",
                "-C",
                str(count),
            ]
        ),
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it subscribe
    with tempfile.TemporaryDirectory() as tmp:
        publishers = []
        start = time.monotonic()
        for topic in TOPICS:
            lines = Path(tmp) / topic.replace("/", "_")
            lines.write_text(
                "".join(
                    json.dumps({"seq": i, "topic": topic}) + "\n"
                    for i in range(count // len(TOPICS))
                )
            )
            with lines.open("rb") as stdin:
                publishers.append(
                    subprocess.Popen(
                        tb.netns_argv(
                            [
                                *pin,
                                "mosquitto_pub",
                                "-h",
                                "127.0.0.1",
                                "-p",
                                str(port),
                                "-q",
                                "1",
                                "-M",
                                "1000",
                                "-t",
                                topic,
                                "-l",
                            ]
                        ),
                        stdin=stdin,
                    )
                )
        try:
            counter.wait(300)
        finally:
            for process in publishers:
                process.wait(60)
    return time.monotonic() - start


def throughput_agent(count: int, protocol: str, *, idle: bool = True) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="iotdr-bench-") as tmp,
        Testbed.up(Path(tmp) / "tb") as tb,
    ):
        local = {"bridge": {**BRIDGE["bridge"], "local_protocol": protocol}}
        agent = _runner(tb, {**BRIDGE, **local})
        agent.prefix = ["taskset", "-c", str(AGENT_CORE)]
        agent.start()
        agent.wait_connected("region-a")
        agent.wait_for(lambda s: "bridge" in s, 20.0, "bridge")
        assert agent.process is not None
        pid = agent.process.pid
        time.sleep(2.0)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(30.0 if idle else 0.0)
        idle_cpu = (cpu_seconds(pid) - cpu0) / max(time.monotonic() - t0, 1e-9) * 100
        idle_rss, idle_pss = memory_mib(pid), memory_mib(pid, "Pss")
        cpu0 = cpu_seconds(pid)
        took = c_load(tb, tb.info.local.port, count)
        load_cpu = (cpu_seconds(pid) - cpu0) / took * 100
        load_rss = memory_mib(pid)
        status = agent.status() or {}
        agent.stop()
        return {
            "msg_per_s": count / took,
            "idle_cpu_pct": idle_cpu,
            "idle_rss_mb": idle_rss,
            "idle_pss_mb": idle_pss,
            "load_cpu_pct": load_cpu,
            # What one core sustains: messages per second of the agent's own
            # CPU time (steady when a noisy machine starves the load side).
            "msg_per_cpu_s": count / max(load_cpu / 100 * took, 1e-9),
            "load_rss_mb": load_rss,
            "spooled": float(status.get("bridge", {}).get("spooled", 0)),
        }


def memory_without_bridge() -> dict[str, float]:
    """RSS and PSS of the failover agent alone (no bridge: no paho, no
    SQLite), connected and idle for 10 s."""
    with (
        tempfile.TemporaryDirectory(prefix="iotdr-bench-") as tmp,
        Testbed.up(Path(tmp) / "tb") as tb,
    ):
        agent = _runner(tb, {"heartbeat": {"topic": None}}).start()
        agent.wait_connected("region-a")
        assert agent.process is not None
        time.sleep(10.0)
        pid = agent.process.pid
        figures = {"rss_mb": memory_mib(pid), "pss_mb": memory_mib(pid, "Pss")}
        agent.stop()
        return figures


def throughput_mosquitto_bridge(count: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="iotdr-bench-") as tmp,
        Testbed.up(Path(tmp) / "tb") as tb,
    ):
        info = tb.info
        conf = Path(tmp) / "bridge.conf"
        conf.write_text(
            "user root\npersistence false\nlog_dest stderr\n"
            "listener 1884 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            "connection iotdr-bridge\n"
            f"address {info.primary.host}:{info.primary.port}\n"
            f"remote_clientid {info.device.client_id}\n"
            f"bridge_cafile {info.ca.cert}\nbridge_certfile {info.device.cert}\n"
            f"bridge_keyfile {info.device.key}\n"
            "topic # out 1 sensors/ dt/gw1/sensors/\n"
        )
        process = tb.spawn(
            ["taskset", "-c", str(AGENT_CORE), "mosquitto", "-c", str(conf)],
            Path(tmp) / "bridge.log",
        )
        time.sleep(2.0)  # connected to region-a
        took = c_load(tb, 1884, count)
        process.terminate()
        process.wait(10)
        return {"msg_per_s": count / took}


def zero_loss(count: int, rate: float) -> dict[str, int]:
    with (
        tempfile.TemporaryDirectory(prefix="iotdr-bench-") as tmp,
        Testbed.up(Path(tmp) / "tb") as tb,
    ):
        observers = {r: Observer(tb.info, r, ["dt/#"]).start() for r in ("primary", "secondary")}
        for observer in observers.values():
            assert observer.wait_connected(20.0)
        agent = _runner(tb, BRIDGE).start()
        agent.wait_connected("region-a")
        publisher = LocalPublisher(tb.info, max_inflight=1000).start()
        gate = threading.Event()
        gate.set()
        feeder = threading.Thread(
            target=publisher.publish_many, args=(TOPICS, count // 2, rate, gate)
        )
        feeder.start()
        duration = count / rate
        time.sleep(duration * 0.15)
        # A broker SIGKILLed mid-stream loses what it acknowledged but had not
        # yet delivered to subscribers (that is the region's loss, not the
        # agent's): pause until the observers have everything, kill, resume.
        gate.clear()
        time.sleep(0.2)  # a publish under way reaches the client
        if not publisher.wait_settled(60.0):
            raise RuntimeError("the local broker did not acknowledge what was published")
        tally = Tally(observers)
        caught_up = time.monotonic() + 120
        while not set(publisher.expected()) <= tally.update():
            if time.monotonic() > caught_up:
                raise RuntimeError("observers did not catch up before the region kill")
            time.sleep(0.2)
        tb.kill_region("primary")
        gate.set()
        agent.wait_connected("region-b")
        print("  failed over", file=sys.stderr, flush=True)
        time.sleep(duration * 0.1)
        tb.restore_region("primary")
        # The restarted region has no subscriber until the observer is back:
        # a failback before that would publish into the void.
        if not observers["primary"].wait_connected(30.0, connections=2):
            raise RuntimeError("the observer did not reconnect to the restored primary")
        if (agent.status() or {}).get("region") == "region-a":
            print("  WARNING: failed back before the observer was back", file=sys.stderr)
        agent.wait_connected("region-a", timeout=60.0)
        print("  failed back", file=sys.stderr, flush=True)
        time.sleep(duration * 0.1)
        agent.kill()
        time.sleep(1.0)
        agent.start()
        agent.wait_connected("region-a")
        print("  agent SIGKILLed and restarted", file=sys.stderr, flush=True)
        feeder.join()
        assert publisher.wait_handed_over(count, 120.0)
        expected = set(publisher.expected())
        deadline = time.monotonic() + 300
        while not expected <= tally.update() and time.monotonic() < deadline:
            time.sleep(1.0)
        seen, total = tally.seen, tally.total
        connections = {r: o.connections for r, o in observers.items()}
        print(
            f"  observer connections: {connections} (region-a: 1 + its restore)",
            file=sys.stderr,
            flush=True,
        )
        publisher.stop()
        agent.stop()
        for observer in observers.values():
            observer.stop()
        delivered = len(expected & seen)
        for topic in TOPICS:
            missing = sorted(seq for t, seq in expected - seen if t == topic)
            if missing:
                print(
                    f"  missing on {topic}: {len(missing)}, {ranges(missing)}",
                    file=sys.stderr,
                    flush=True,
                )
        return {
            "published": len(expected),
            "delivered": delivered,
            "lost": len(expected - seen),
            "duplicated": total - len(seen),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--zero-loss", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="zero-loss publish rate")
    parser.add_argument(
        "--agent-python",
        default=sys.executable,
        help="run the agent with this Python (e.g. the .deb's build/deb/iotdr-agent"
        "/usr/lib/iotdr/venv/bin/python: a regular install)",
    )
    args = parser.parse_args()
    global agent_python  # noqa: PLW0603 (one setting for the whole run)
    agent_python = args.agent_python
    os.sched_setaffinity(0, {LOAD_CORE})  # everything but the agent on the other core

    if args.messages:
        ours = throughput_agent(args.messages, "3.1.1")
        ours_v5 = throughput_agent(args.messages, "5", idle=False)
        peer = throughput_mosquitto_bridge(args.messages)
        alone = memory_without_bridge()
        print(
            f"\nBridge benchmark ({args.messages} messages, agent/bridge pinned to core "
            f"{AGENT_CORE}, durable spool)"
        )
        print(
            f"  iotdr agent:      {ours['msg_per_s']:8.0f} msg/s  "
            f"(CPU {ours['load_cpu_pct']:.0f} % of a core, RSS {ours['load_rss_mb']:.1f} MiB "
            "under load; local session MQTT 3.1.1, the default)"
        )
        print(
            f"  iotdr agent:      {ours_v5['msg_per_s']:8.0f} msg/s  "
            f"(CPU {ours_v5['load_cpu_pct']:.0f} % of a core; local session MQTT 5)"
        )
        print(
            "  messages per second of agent CPU time (one core's capacity): "
            f"{ours['msg_per_cpu_s']:.0f} (MQTT 3.1.1), {ours_v5['msg_per_cpu_s']:.0f} (MQTT 5)"
        )
        print(f"  mosquitto bridge: {peer['msg_per_s']:8.0f} msg/s  (in-memory queue, no spool)")
        print(f"  ratio agent/bridge: {ours['msg_per_s'] / peer['msg_per_s']:.2f}")
        print(
            f"  agent idle: CPU {ours['idle_cpu_pct']:.2f} % of a core over 30 s, "
            f"RSS {ours['idle_rss_mb']:.1f} MiB (PSS {ours['idle_pss_mb']:.1f} MiB)"
        )
        print(
            f"  agent without the bridge, idle: RSS {alone['rss_mb']:.1f} MiB "
            f"(PSS {alone['pss_mb']:.1f} MiB)"
        )
    if args.zero_loss:
        result = zero_loss(args.zero_loss, args.rate)
        print(
            f"\nZero-loss run: {args.zero_loss} messages at {args.rate:.0f}/s through "
            "failover, failback and a SIGKILL of the agent"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
