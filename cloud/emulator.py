"""A local AWS emulator (moto's server) for trying the cloud package without
an AWS account: `iotdr cloud deploy --endpoint-url URL` and friends work
against it, minus what moto cannot do (cloud/README.md lists it). Needs
`moto[server]` (in the dev extra).

moto runs in its own process, not as ThreadedMotoServer: its Lambda
emulation starts Docker clients per stream record, and their unclosed
sockets and subprocesses would otherwise surface in the caller's process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Emulator:
    url: str
    pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server(*, docker_free_lambda: bool = True, timeout_s: float = 30.0) -> Iterator[Emulator]:
    """moto's server on a free loopback port, stopped on exit.
    `docker_free_lambda`: Lambda invocations get a canned answer at once
    instead of failing to reach a Docker daemon."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if docker_free_lambda:
            config = urllib.request.Request(
                f"{url}/moto-api/config",
                data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                method="POST",
            )
            urllib.request.urlopen(config, timeout=10).close()
        yield Emulator(url=url, pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
