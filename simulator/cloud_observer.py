"""The cloud side of a run: what actually reached the regions.

Run as its own process inside the testbed's namespace (so its MQTT traffic
does not compete with the fleet's event loop for the interpreter): it
subscribes to the fleet's telemetry in both regions with persistent
sessions (testbed `Observer`s), prints `ready` once both are subscribed,
and on SIGTERM writes how many distinct (device, sequence) pairs and how
many copies in all it received. Lost = produced - distinct; duplicated =
copies - distinct.

    python -m iotdr.simulator.cloud_observer --testbed DIR --topic FILTER --out FILE
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

from iotdr.testbed.contract import load_info
from iotdr.testbed.layout import Layout
from iotdr.testbed.observer import Observer

_READY_TIMEOUT_S = 30.0


def count(observers: list[Observer]) -> dict[str, object]:
    """Copies received in all, distinct (device, sequence) pairs, and each
    device's received sequence numbers."""
    copies: Counter[tuple[str, int]] = Counter()
    for observer in observers:
        for message in observer.messages:
            parts = message.payload.split(b" ", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                copies[(parts[0].decode(errors="replace"), int(parts[1]))] += 1
    received: dict[str, list[int]] = {}
    for client_id, sequence in copies:
        received.setdefault(client_id, []).append(sequence)
    return {"distinct": len(copies), "total": sum(copies.values()), "received": received}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloud_observer")
    parser.add_argument("--testbed", type=Path, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    info = load_info(Layout.at(args.testbed).testbed_json)
    observers = [
        Observer(info, role, [args.topic], client_id=f"iotdr-sim-observer-{role}").start()
        for role in ("primary", "secondary")
    ]
    for observer in observers:
        if not observer.wait_connected(_READY_TIMEOUT_S):
            print("observer could not subscribe in time", file=sys.stderr)
            return 1
    print("ready", flush=True)
    stop.wait()
    for observer in observers:
        observer.stop()
    args.out.write_text(json.dumps(count(observers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
