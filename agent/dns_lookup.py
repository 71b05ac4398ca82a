"""DNS adapter: looks up the CNAME and TXT record and reports one event.

Uses the system resolver configuration (the `nameserver` lines of
/etc/resolv.conf, read at every lookup as glibc does, so a namespace's own
resolv.conf or a DHCP change applies) unless `dns.nameserver` is set.
Queries go over UDP from a fresh socket (a random source port) with a
random id, and over TCP when the answer is truncated (RFC 7766). Servers
are asked in order until one answers, all within `dns.timeout_s`.
Every failure becomes a `DnsFailed` event; interpreting answers
(allowlist, TXT JSON) is the core's job.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iotdr.agent.core.events import DnsAnswered, DnsFailed, DnsFailure, Event
from iotdr.agent.core.settings import DnsSettings
from iotdr.agent.dns_wire import (
    MalformedError,
    Rcode,
    Record,
    RecordType,
    Response,
    parse_answer,
    query,
    records_for,
    txt_strings,
)

RESOLV_CONF = Path("/etc/resolv.conf")
_MAX_NAMESERVERS = 3  # glibc's MAXNS: later nameserver lines are ignored


class DnsError(Exception):
    def __init__(self, failure: DnsFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Resolver:
    nameserver: str | None  # None: the resolv.conf's
    port: int
    timeout_s: float
    resolv_conf: Path = RESOLV_CONF

    def nameservers(self) -> list[str]:
        if self.nameserver:
            return [self.nameserver]
        try:
            text = self.resolv_conf.read_text(errors="replace")
        except OSError as exc:
            raise DnsError(
                DnsFailure.OTHER, f"cannot read {self.resolv_conf}: {exc.strerror}"
            ) from None
        servers = [
            fields[1]
            for fields in (line.split() for line in text.splitlines())
            if len(fields) >= 2 and fields[0] == "nameserver"
        ][:_MAX_NAMESERVERS]
        if not servers:
            raise DnsError(DnsFailure.OTHER, f"no nameserver in {self.resolv_conf}")
        return servers


def make_resolver(settings: DnsSettings, resolv_conf: Path = RESOLV_CONF) -> Resolver:
    return Resolver(settings.nameserver, settings.port, settings.timeout_s, resolv_conf)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable: nothing serves DNS there.
        self.received.put_nowait(exc if isinstance(exc, OSError) else OSError(str(exc)))


async def _udp(
    server: str, port: int, request: bytes, check: Callable[[bytes], Response]
) -> Response:
    loop = asyncio.get_running_loop()
    # Connected: the kernel drops datagrams from any other address, and an
    # ICMP "port unreachable" arrives as an error instead of a silent wait.
    transport, protocol = await loop.create_datagram_endpoint(
        _Datagrams, remote_addr=(server, port)
    )
    try:
        transport.sendto(request)
        while True:
            data = await protocol.received.get()
            if isinstance(data, OSError):
                raise data
            try:
                return check(data)
            except MalformedError:
                continue  # not ours (stray, late or spoofed): keep waiting
    finally:
        transport.close()


async def _tcp(
    server: str, port: int, request: bytes, check: Callable[[bytes], Response]
) -> Response:
    reader, writer = await asyncio.open_connection(server, port)
    try:
        writer.write(struct.pack("!H", len(request)) + request)
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return check(await reader.readexactly(length))
    finally:
        writer.close()


async def _ask(server: str, port: int, name: str, rtype: RecordType) -> Response:
    """One server's answer (UDP, then TCP if truncated); DnsError if it
    fails or answers with a failure other than NXDOMAIN."""
    query_id = int.from_bytes(os.urandom(2), "big")
    request = query(query_id, name, rtype)

    def check(data: bytes) -> Response:
        return parse_answer(data, query_id, name, rtype)

    try:
        response = await _udp(server, port, request, check)
        if response.truncated:
            response = await _tcp(server, port, request, check)
    except MalformedError as exc:  # over TCP: the one answer is unreadable
        raise DnsError(DnsFailure.SERVFAIL, f"{server}: malformed answer: {exc}") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DnsError(DnsFailure.SERVFAIL, f"{server}: {why}") from None
    if response.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
        known = {rcode.value: rcode.name for rcode in Rcode}
        rcode = known.get(response.rcode, f"rcode {response.rcode}")
        raise DnsError(DnsFailure.SERVFAIL, f"{server} answered {rcode}")
    return response


async def answer(resolver: Resolver, name: str, rtype: RecordType) -> list[Record]:
    """`name`'s `rtype` records; DnsError says why there are none."""
    servers = resolver.nameservers()
    errors: list[str] = []
    try:
        async with asyncio.timeout(resolver.timeout_s):
            for server in servers:
                try:
                    response = await _ask(server, resolver.port, name, rtype)
                except DnsError as exc:
                    errors.append(exc.detail)
                    continue
                break
            else:
                # Every server failed or refused (dnspython's NoNameservers).
                raise DnsError(DnsFailure.SERVFAIL, "; ".join(errors))
    except TimeoutError:
        tried = f" ({'; '.join(errors)})" if errors else ""
        raise DnsError(
            DnsFailure.TIMEOUT, f"no answer for {name} in {resolver.timeout_s} s{tried}"
        ) from None
    except ValueError as exc:  # the name cannot be asked for (not ASCII, too long)
        raise DnsError(DnsFailure.OTHER, str(exc)) from None
    if response.rcode == Rcode.NXDOMAIN:
        raise DnsError(DnsFailure.NXDOMAIN, f"{name} does not exist")
    records = records_for(response, name, rtype)
    if not records:
        raise DnsError(DnsFailure.NO_ANSWER, f"no {rtype.name} record at {name}")
    return records


def _txt(records: list[Record]) -> str:
    """The TXT text: each record's strings joined (a text longer than 255
    bytes is split into strings), records in the answer's order."""
    try:
        raw = b"".join(b"".join(txt_strings(record.rdata)) for record in records)
    except MalformedError:
        raise DnsError(DnsFailure.OTHER, "malformed TXT record") from None
    return raw.decode("utf-8", "replace")


async def lookup(
    resolver: Resolver,
    name: str,
    txt_name: str | None,
    clock: Callable[[], float],
) -> Event:
    """Resolve the CNAME (and the TXT); the event is stamped when the
    answer is in."""
    try:
        cnames = await answer(resolver, name, RecordType.CNAME)
    except DnsError as exc:
        return DnsFailed(now=clock(), failure=exc.failure, detail=exc.detail[:200])
    target = (cnames[0].target or "").rstrip(".")
    ttl = min(record.ttl for record in cnames)
    txt: str | None = None
    if txt_name:
        try:
            txt = _txt(await answer(resolver, txt_name, RecordType.TXT))
        except DnsError:
            txt = None  # the CNAME alone is still an answer; roles stay as they were
    return DnsAnswered(now=clock(), target=target, ttl=float(ttl), txt=txt)
