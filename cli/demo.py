"""`iotdr demo`: a failover, a failback, a CNAME move and a JITR region,
on a local two-region testbed, with timings in plain words.

The agent runs with default failover settings; only its heartbeat is made
frequent (every 0.2 s) so "publishing" shows within a fraction of a second.
Every timing is measured from the moment a fault is applied until the
agent reports the new connection and its heartbeat is seen there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from iotdr.cli.agent_runner import AgentError, AgentRunner
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.observer import ObservedMessage, Observer
from iotdr.testbed.testbed import Testbed

HEARTBEAT_S = 0.2


def _say(text: str) -> None:
    print(text, flush=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Demo:
    def __init__(self, testbed: Testbed, agent: AgentRunner) -> None:
        self.tb = testbed
        self.agent = agent
        topic = str(agent.config["heartbeat"]["topic"])
        self.topic = topic
        self.observers = {
            region: Observer(testbed.info, region, [topic]).start()
            for region in ("primary", "secondary")
        }

    def close(self) -> None:
        for observer in self.observers.values():
            observer.stop()

    def arrival(self, role: str, region: str, since: float, timeout: float) -> float:
        """Seconds from `since` until the agent is connected to `region` and
        a heartbeat it published after `since` has reached that region's
        broker. A restored region replays the QoS 1 messages it saved before
        it died; their timestamps are older, so they do not count."""
        since_wall = time.time() - (time.monotonic() - since)

        def fresh(m: ObservedMessage) -> bool:
            if m.topic != self.topic or m.received_at <= since:
                return False
            try:
                published = float(json.loads(m.payload)["ts"])
            except (ValueError, KeyError, TypeError):
                return False
            return published >= since_wall

        self.agent.wait_connected(region, timeout)
        observer = self.observers[role]
        assert observer.wait_connected(timeout)
        if not observer.wait_for(lambda ms: any(fresh(m) for m in ms), timeout):
            raise AgentError(f"no heartbeat on {region} within {timeout} s")
        return min(m.received_at for m in observer.messages if fresh(m)) - since

    def run(self) -> None:
        info = self.tb.info
        failback = self.agent.config.get("failback", {})
        probe_s = failback.get("probe_interval_s", 5.0)
        window_s = failback.get("stability_window_s", 10.0)

        started = time.monotonic()
        took = self.arrival("primary", "region-a", started, 30.0)
        _say(
            f"1. Connected to the primary ({info.primary.name}) and publishing, "
            f"{_ms(took)} after start."
        )

        time.sleep(2.0)  # steady state: publishing, not just connected
        kill = time.monotonic()
        self.tb.kill_region("primary")
        took = self.arrival("secondary", "region-b", kill, 30.0)
        _say(
            f"2. Primary killed. Failed over to the secondary ({info.secondary.name}) "
            f"and publishing there in {_ms(took)}."
        )

        restore = time.monotonic()
        self.tb.restore_region("primary")
        took = self.arrival("primary", "region-a", restore, probe_s + window_s + 30.0)
        _say(
            f"3. Primary back. Failed back after {took:.1f} s: it had to answer probes "
            f"for the stability window ({window_s:.0f} s, probes every {probe_s:.0f} s)."
        )

        move = time.monotonic()
        self.tb.set_cname(info.secondary.host)
        took = self.arrival("secondary", "region-b", move, 60.0)
        ttl = self.agent.status() or {}
        dns_ttl = (ttl.get("last_dns") or {}).get("ttl")
        _say(
            f"4. CNAME {info.dns.cname} moved to {info.secondary.name}. Followed in "
            f"{_ms(took)} (record TTL {dns_ttl:.0f} s)."
        )

        self.tb.set_cname(info.primary.host)
        self.arrival("primary", "region-a", time.monotonic(), 60.0)
        self.tb.set_jitr("secondary", True, delay_s=3.0)
        before = self.agent.log_text().count("just-in-time registration")
        kill = time.monotonic()
        self.tb.kill_region("primary")
        took = self.arrival("secondary", "region-b", kill, 60.0)
        retries = self.agent.log_text().count("just-in-time registration") - before
        _say(
            f"5. JITR on the secondary: it hung up on the unregistered certificate; "
            f"accepted after {retries} retr{'y' if retries == 1 else 'ies'}, "
            f"publishing {took:.1f} s after the primary died."
        )

        status = self.agent.status() or {}
        _say(
            f"   Agent status: {status.get('state')} to {status.get('endpoint')} "
            f"({status.get('role')}), failovers {status.get('failovers')}, "
            f"failbacks {status.get('failbacks')}."
        )


def run_demo(directory: str | None, *, keep: bool = False) -> int:
    if os.geteuid() != 0:
        print("iotdr demo: needs root (the testbed creates a network namespace)", file=sys.stderr)
        return 1
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="iotdr-demo-"))
    _say(
        f"Bringing up a two-region testbed in {workdir} (mosquitto x3 with mutual TLS, Knot DNS)..."
    )
    try:
        testbed = Testbed.up(workdir)
    except TestbedError as exc:
        print(f"iotdr demo: {exc}", file=sys.stderr)
        return 1
    agent = AgentRunner(testbed, overrides={"heartbeat": {"interval_s": HEARTBEAT_S}})
    demo: Demo | None = None
    code = 0
    try:
        _say(
            f"Testbed {testbed.info.netns}: regions {testbed.info.primary.name} "
            f"and {testbed.info.secondary.name}; starting the agent."
        )
        agent.start()
        demo = Demo(testbed, agent)
        demo.run()
        _say("Done: every step passed.")
    except AgentError as exc:
        print(f"iotdr demo: FAILED: {exc}", file=sys.stderr)
        code = 1
    finally:
        if demo is not None:
            demo.close()
        agent.stop()
        if keep:
            _say(f"Left running; stop with: iotdr testbed down --dir {workdir}")
        else:
            testbed.down()
            if directory is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return code
