"""Which MQTT client carries many simulated devices in one process?

Measures, on a testbed region with mutual TLS and a certificate per device:
- AWS CRT MQTT5 clients sharing one event loop group (what `iotdr simulate`
  uses): connects are asynchronous, TLS (s2n) and MQTT run natively;
- paho-mqtt clients driven by one selector loop (the pure-Python option,
  and what Locust's gevent workers can run): paho's connect() blocks for
  TCP and the TLS handshake, so connects go through a thread pool.
For each: wall time to connect N devices, CPU per connect, CPU per QoS 1
message (publish + PUBACK), and memory per connected device.

    sudo .venv/bin/python bench/sim_transport.py --devices 1000 --messages 20
"""

from __future__ import annotations

import argparse
import concurrent.futures
import resource
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from awscrt import io, mqtt5
from paho.mqtt.enums import CallbackAPIVersion

from iotdr.simulator.run import fleet_tls_environment
from iotdr.testbed import Testbed
from iotdr.testbed.pki import issue_client_certificates
from iotdr.testbed.prerequisites import raise_open_files_limit
from iotdr.testbed.tls import client_context


@dataclass
class Figures:
    name: str
    connect_wall_s: float
    connect_cpu_ms: float  # per device
    message_cpu_us: float  # per QoS 1 message, publish to PUBACK
    rss_kb: float  # per connected device


def _rss_kb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("devices did not finish in time")
        time.sleep(0.01)


def _reached(counter: list[int], wanted: int) -> Callable[[], bool]:
    return lambda: counter[0] >= wanted


def crt(testbed: Testbed, certs: Path, ids: list[str], messages: int) -> Figures:
    info = testbed.info
    region = info.primary
    group = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(group, io.DefaultHostResolver(group))
    lock = threading.Lock()
    connected = [0]
    acked = [0]

    def on_success(_data: mqtt5.LifecycleConnectSuccessData) -> None:
        with lock:
            connected[0] += 1

    rss0, cpu0, wall0 = _rss_kb(), _cpu(), time.monotonic()
    clients = []
    if True:  # the whole process runs inside the testbed's namespace
        for client_id in ids:
            options = io.TlsContextOptions.create_client_with_mtls_from_path(
                str(certs / f"{client_id}.pem"), str(certs / f"{client_id}.key")
            )
            options.override_default_trust_store_from_path(None, str(certs / "ca.pem"))
            client = mqtt5.Client(
                mqtt5.ClientOptions(
                    host_name=region.host,
                    port=region.port,
                    bootstrap=bootstrap,
                    tls_ctx=io.ClientTlsContext(options),
                    connect_options=mqtt5.ConnectPacket(client_id=client_id),
                    on_lifecycle_event_connection_success_fn=on_success,
                )
            )
            client.start()
            clients.append(client)
        _wait(lambda: connected[0] == len(ids), 300)
    connect_wall, connect_cpu, rss = time.monotonic() - wall0, _cpu() - cpu0, _rss_kb() - rss0

    def on_ack(_future: concurrent.futures.Future[object]) -> None:
        with lock:
            acked[0] += 1

    cpu1 = _cpu()
    for n in range(messages):
        for client in clients:
            packet = mqtt5.PublishPacket(topic="bench/t", payload=b"%d" % n, qos=mqtt5.QoS(1))
            client.publish(packet).add_done_callback(on_ack)
        wanted = (n + 1) * len(clients)
        _wait(_reached(acked, wanted), 120)
    message_cpu = _cpu() - cpu1
    for client in clients:
        client.stop()
    return Figures(
        "AWS CRT MQTT5, one event loop group",
        connect_wall,
        connect_cpu * 1000 / len(ids),
        message_cpu * 1e6 / (messages * len(ids)),
        rss / len(ids),
    )


def paho(testbed: Testbed, certs: Path, ids: list[str], messages: int) -> Figures:
    info = testbed.info
    region = info.primary
    acked = [0]

    def on_publish(*_args: object) -> None:
        acked[0] += 1

    def connect(client_id: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        client.tls_set_context(
            client_context(
                certs / "ca.pem",
                certs / f"{client_id}.pem",
                certs / f"{client_id}.key",
                server_hostname=region.host,
            )
        )
        client.on_publish = on_publish
        client.connect(region.address, region.port, keepalive=60)
        return client

    rss0, cpu0, wall0 = _rss_kb(), _cpu(), time.monotonic()
    selector = selectors.DefaultSelector()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        clients = list(pool.map(connect, ids))
    for client in clients:
        sock = client.socket()
        assert sock is not None
        selector.register(sock, selectors.EVENT_READ, client)

    def pump(until: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("paho devices did not finish in time")
            for client in clients:
                if client.want_write():
                    client.loop_write()
            for key, _ in selector.select(timeout=0.05):
                key.data.loop_read()

    pump(lambda: all(c.is_connected() for c in clients), 300)
    connect_wall, connect_cpu, rss = time.monotonic() - wall0, _cpu() - cpu0, _rss_kb() - rss0
    cpu1 = _cpu()
    for n in range(messages):
        for client in clients:
            client.publish("bench/t", b"%d" % n, qos=1)
        wanted = (n + 1) * len(clients)
        pump(_reached(acked, wanted), 120)
    message_cpu = _cpu() - cpu1
    for client in clients:
        client.disconnect()
        client.loop_write()
    return Figures(
        "paho-mqtt, one selector loop (connects on 16 threads)",
        connect_wall,
        connect_cpu * 1000 / len(ids),
        message_cpu * 1e6 / (messages * len(ids)),
        rss / len(ids),
    )


def measure(testbed_dir: Path, devices: int, messages: int) -> None:
    """Inside the testbed's namespace: both transports, one after the other."""
    raise_open_files_limit()
    testbed = Testbed.load(testbed_dir)
    certs = testbed_dir / "devices"
    ids = [f"bench-{i:05d}" for i in range(devices)]
    results = []
    for run in (crt, paho):
        results.append(run(testbed, certs, ids, messages))
        time.sleep(2)  # let the region close the previous clients
    print(f"{devices} devices, {messages} QoS 1 messages each, one region, mutual TLS")
    print(
        f"{'transport':<55} {'connect all':>12} {'CPU/connect':>12} {'CPU/message':>12} "
        f"{'RSS/device':>11}"
    )
    for f in results:
        print(
            f"{f.name:<55} {f.connect_wall_s:>10.1f} s {f.connect_cpu_ms:>9.2f} ms "
            f"{f.message_cpu_us:>9.0f} µs {f.rss_kb:>8.0f} KB"
        )
    crt_figures, paho_figures = results
    print(
        "paho / CRT: CPU per connect "
        f"{paho_figures.connect_cpu_ms / crt_figures.connect_cpu_ms:.2f}x, "
        f"CPU per message {paho_figures.message_cpu_us / crt_figures.message_cpu_us:.2f}x, "
        f"memory per device {paho_figures.rss_kb / max(crt_figures.rss_kb, 1):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="QoS 1 messages per device")
    parser.add_argument("--testbed", type=Path, help=argparse.SUPPRESS)  # the inner half
    args = parser.parse_args()
    if args.testbed is not None:
        measure(args.testbed, args.devices, args.messages)
        return
    with tempfile.TemporaryDirectory() as tmp, Testbed.up(Path(tmp) / "tb") as testbed:
        ids = [f"bench-{i:05d}" for i in range(args.devices)]
        issue_client_certificates(testbed.layout, ids, testbed.directory / "devices")
        argv = [
            sys.executable,
            __file__,
            "--devices",
            str(args.devices),
            "--messages",
            str(args.messages),
            "--testbed",
            str(testbed.directory),
        ]
        env = fleet_tls_environment(testbed.directory / "devices")
        subprocess.run(testbed.netns_argv(argv), check=True, env=env)


if __name__ == "__main__":
    main()
