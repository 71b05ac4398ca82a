"""Port 443 of a region, as AWS IoT serves it: MQTT over TLS only with ALPN.

AWS IoT accepts MQTT with X.509 client certificates on port 443 only when
the TLS ClientHello offers the ALPN protocol `x-amzn-mqtt-ca` ("Protocols,
port mappings, and authentication", AWS IoT developer guide); without it
the connection is refused. Mosquitto has no such rule, so this gate owns
the region's address on port 443: it reads the ClientHello, hangs up
unless the ALPN extension names `x-amzn-mqtt-ca`, and otherwise splices the
connection, ClientHello included, to the region's mutual-TLS listener. TLS
(and the certificate check) stays end to end between client and broker.

Run inside the namespace:
    python -m iotdr.testbed.alpn_gate --listen ADDR:443 --upstream ADDR:8883
"""

import argparse
import asyncio
import contextlib
import logging
import struct
from collections.abc import Sequence

log = logging.getLogger("iotdr.alpn_gate")

AWS_IOT_MQTT_ALPN = b"x-amzn-mqtt-ca"
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_ALPN_EXTENSION = 0x0010
_CHUNK = 65536
_HELLO_TIMEOUT_S = 10.0


class HelloError(ValueError):
    """Not a TLS ClientHello this gate can read."""


def alpn_protocols(record: bytes) -> list[bytes]:
    """The ALPN protocols a ClientHello offers (RFC 8446 4.1.2, RFC 7301).

    `record` is one TLS record: a 5-byte header and a handshake message.
    """
    if len(record) < 9 or record[0] != _HANDSHAKE or record[5] != _CLIENT_HELLO:
        raise HelloError("not a TLS ClientHello")
    body = record[9 : 9 + int.from_bytes(record[6:9], "big")]
    at = 2 + 32  # legacy_version, random
    at += 1 + body[at]  # legacy_session_id
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher_suites
    at += 1 + body[at]  # legacy_compression_methods
    if at + 2 > len(body):
        return []  # no extensions at all
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    at += 2
    while at + 4 <= end:
        kind, length = struct.unpack("!HH", body[at : at + 4])
        data = body[at + 4 : at + 4 + length]
        at += 4 + length
        if kind == _ALPN_EXTENSION:
            protocols, cursor = [], 2
            while cursor < len(data):
                size = data[cursor]
                protocols.append(data[cursor + 1 : cursor + 1 + size])
                cursor += 1 + size
            return protocols
    return []


async def _read_hello(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    length = int.from_bytes(header[3:5], "big")
    return header + await reader.readexactly(length)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class Gate:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(_HELLO_TIMEOUT_S):
                hello = await _read_hello(reader)
            offered = alpn_protocols(hello)
        except (TimeoutError, asyncio.IncompleteReadError, HelloError, IndexError) as exc:
            log.info("%s: refused, no readable ClientHello (%s)", peer, exc or type(exc).__name__)
            writer.close()
            return
        if AWS_IOT_MQTT_ALPN not in offered:
            log.info("%s: refused, ALPN %s lacks x-amzn-mqtt-ca", peer, offered)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError as exc:
            log.info("%s: upstream %s: %s", peer, self._upstream, exc)
            writer.close()
            return
        log.info("%s: ALPN x-amzn-mqtt-ca, spliced to %s", peer, self._upstream)
        up_writer.write(hello)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _serve(listen: tuple[str, int], gate: Gate) -> None:
    server = await asyncio.start_server(gate.handle, *listen)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpn_gate", description=__doc__)
    parser.add_argument("--listen", type=_address, required=True, help="ADDR:PORT")
    parser.add_argument("--upstream", type=_address, required=True, help="ADDR:PORT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.listen, Gate(*args.upstream)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
