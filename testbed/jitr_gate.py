"""JITR gate: AWS IoT just-in-time registration, emulated in front of a region.

With JITR, a device's first connection to a region that has not registered
its certificate completes the TLS handshake and is then closed by AWS IoT,
without a CONNACK; the registration finishes a few seconds later and the
next connection works (AWS IoT docs, "Just-in-time registration").

The gate owns the region's address and port: it terminates mutual TLS with
the region's certificate, reads the client certificate and
- hangs up right after the handshake on a certificate it sees for the first
  time, or whose first sighting is less than `--delay` seconds ago;
- otherwise splices the connection, byte for byte, to the region's broker on
  its internal plain listener.
First sightings are kept in a registry file, so a region that is killed and
restored remembers the certificates it has registered.

Run inside the namespace: python -m iotdr.testbed.jitr_gate --listen ADDR:PORT ...
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from iotdr.testbed.tls import server_context

log = logging.getLogger("iotdr.jitr_gate")

_CHUNK = 65536
_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GateConfig:
    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    delay_s: float
    registry: Path


class Registry:
    """When each certificate (by SHA-256 fingerprint) was first seen, on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._first_seen: dict[str, float] = {}
        if path.exists():
            self._first_seen = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}

    def first_seen(self, fingerprint: str, now: float) -> float:
        if fingerprint not in self._first_seen:
            self._first_seen[fingerprint] = now
            temporary = self._path.with_name(f".{self._path.name}.tmp")
            temporary.write_text(json.dumps(self._first_seen, indent=2))
            temporary.replace(self._path)
        return self._first_seen[fingerprint]


def _common_name(der: bytes) -> str:
    subject = x509.load_der_x509_certificate(der).subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "?"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout=2.0)


class Gate:
    def __init__(self, config: GateConfig) -> None:
        self._config = config
        self._registry = Registry(config.registry)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if der is None:
            await _close(writer)
            return
        name = _common_name(der)
        now = time.time()
        pending_s = self._registry.first_seen(hashlib.sha256(der).hexdigest(), now)
        pending_s += self._config.delay_s - now
        if pending_s > 0:
            log.info("%s: certificate not registered yet, %.1f s left: hang up", name, pending_s)
            await _close(writer)
            return
        await self._splice(name, reader, writer)

    async def _splice(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self._config.upstream_host, self._config.upstream_port
            )
        except OSError as exc:
            log.warning("%s: broker unreachable (%s), hanging up", name, exc)
            await _close(writer)
            return
        log.info("%s: registered, connected to the broker", name)
        pumps = [
            asyncio.create_task(_pump(reader, upstream_writer)),
            asyncio.create_task(_pump(upstream_reader, writer)),
        ]
        # Either side closing ends the connection, as a TCP proxy in front of
        # MQTT would: MQTT has no use for half-closed connections.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(_close(upstream_writer), _close(writer))

    async def serve(self) -> None:
        config = self._config
        context = server_context(config.ca_file, config.cert_file, config.key_file)
        server = await asyncio.start_server(
            self.handle,
            self._config.listen_host,
            self._config.listen_port,
            ssl=context,
            ssl_handshake_timeout=_HANDSHAKE_TIMEOUT_S,
        )
        log.info(
            "listening on %s:%d, JITR delay %.1f s, broker at %s:%d",
            self._config.listen_host,
            self._config.listen_port,
            self._config.delay_s,
            self._config.upstream_host,
            self._config.upstream_port,
        )
        async with server:
            await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def parse_args(argv: Sequence[str] | None = None) -> GateConfig:
    parser = argparse.ArgumentParser(prog="jitr_gate", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True, metavar="ADDR:PORT")
    parser.add_argument("--upstream", type=_address, required=True, metavar="ADDR:PORT")
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=3.0, metavar="SECONDS")
    parser.add_argument("--registry", type=Path, required=True)
    args = parser.parse_args(argv)
    return GateConfig(
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        upstream_host=args.upstream[0],
        upstream_port=args.upstream[1],
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        delay_s=args.delay,
        registry=args.registry,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s jitr-gate %(levelname)s %(message)s"
    )
    asyncio.run(Gate(config).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
