"""A program that is the device embeds the agent: its publishes go through
the spool to the active region, and cloud commands come back to it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from iotdr.cli.agent_runner import AgentRunner
from iotdr.testbed.observer import Observer
from iotdr.testbed.operator import region_client
from iotdr.testbed.testbed import Testbed as TwoRegions

pytestmark = pytest.mark.testbed


def test_embedded_publish_and_commands(testbed: TwoRegions) -> None:
    observer = Observer(testbed.info, "primary", ["dt/#"]).start()
    assert observer.wait_connected(20.0)
    config = AgentRunner(testbed, name="embedded", overrides={"heartbeat": {"topic": None}})
    program = Path(__file__).with_name("embedded_program.py")
    log = config.log_path
    process = testbed.spawn([sys.executable, str(program), str(config.config_path), "100"], log)
    try:
        assert observer.wait_for(lambda ms: len(ms) >= 100, 60.0), log.read_text()
        deadline = time.monotonic() + 30
        while "published" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "refused: topic has" in log.read_text()
        operator = region_client(testbed.info, "primary")
        # Repeat until the program has subscribed and answered.
        while process.poll() is None and time.monotonic() < deadline + 30:
            operator.publish("cmd/dev/blink", b"on", qos=1).wait_for_publish(5)
            time.sleep(0.5)
        operator.loop_stop()
        operator.disconnect()
        assert process.wait(10) == 0
        assert "command cmd/dev/blink on" in log.read_text()
        seqs = sorted(int(m.payload.split(b":")[1].strip(b" }")) for m in observer.messages)
        assert seqs[:100] == list(range(100))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        observer.stop()
