"""DNS messages for the agent's two questions (CNAME, TXT), RFC 1035.

Sans-I/O: `query` builds a request, `parse_answer` reads a response into
the records the agent needs; the DNS adapter (`dns_lookup`) moves the bytes.

Why not dnspython here: its `dns.name` imports `importlib.metadata` (to look
for optional packages), and paho-mqtt imports dnspython's whole resolver as
soon as dnspython is installed, only for MQTT-over-SRV, which the bridge
never uses. Together that is 3.6 MiB of the gateway agent's RSS for two
record types; these few dozen lines are what the agent needs of it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

CLASS_IN = 1
_OPT = 41
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_FLAG_QR = 0x8000
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
# EDNS(0) buffer size of DNS Flag Day 2020: no IP fragmentation on any path.
EDNS_PAYLOAD = 1232
_MAX_POINTERS = 64  # compression pointers followed in one name (loops)
# dnspython's text form of a label: these bytes are escaped with a backslash.
_SPECIAL = frozenset(b'"().;\\@$')


class RecordType(enum.IntEnum):
    CNAME = 5
    TXT = 16


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


class MalformedError(ValueError):
    """The response cannot be read (or is not an answer to our question)."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # the owner, lower case (DNS names compare so), no trailing dot
    rtype: int
    ttl: int
    rdata: bytes
    target: str | None = None  # CNAME: the name it points to, as written


@dataclass(frozen=True, slots=True)
class Response:
    rcode: int
    truncated: bool
    answers: tuple[Record, ...]


def encode_name(name: str) -> bytes:
    """A host name in wire form; ValueError if it is not one."""
    labels = [label for label in name.rstrip(".").split(".")]
    if not name.strip(".") or any(not label for label in labels):
        raise ValueError(f"not a DNS name: {name!r}")
    wire = b""
    for label in labels:
        raw = label.encode("ascii")  # UnicodeEncodeError is a ValueError
        if len(raw) > 63:
            raise ValueError(f"label longer than 63 bytes in {name!r}")
        wire += bytes([len(raw)]) + raw
    if len(wire) + 1 > 255:
        raise ValueError(f"name longer than 255 bytes: {name!r}")
    return wire + b"\0"


def query(query_id: int, name: str, rtype: RecordType) -> bytes:
    """A recursive query with an EDNS(0) OPT record, so answers up to
    `EDNS_PAYLOAD` bytes come over UDP (larger ones set TC: ask over TCP)."""
    header = _HEADER.pack(query_id, _FLAG_RD, 1, 0, 0, 1)
    question = encode_name(name) + struct.pack("!HH", rtype, CLASS_IN)
    opt = b"\0" + struct.pack("!HHIH", _OPT, EDNS_PAYLOAD, 0, 0)
    return header + question + opt


def _label_text(raw: bytes) -> str:
    return "".join(
        "\\" + chr(byte)
        if byte in _SPECIAL
        else chr(byte)
        if 0x20 < byte < 0x7F
        else f"\\{byte:03d}"
        for byte in raw
    )


def _read_name(message: bytes, offset: int) -> tuple[str, int]:
    """(name as text, offset after it); follows compression pointers."""
    labels: list[str] = []
    end: int | None = None
    pointers = 0
    while True:
        if offset >= len(message):
            raise MalformedError("name runs past the end")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise MalformedError("truncated compression pointer")
            pointers += 1
            if pointers > _MAX_POINTERS:
                raise MalformedError("compression pointer loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise MalformedError(f"unknown label type {length:#x}")
        offset += 1
        if length == 0:
            break
        if offset + length > len(message):
            raise MalformedError("label runs past the end")
        labels.append(_label_text(message[offset : offset + length]))
        offset += length
    return ".".join(labels), end if end is not None else offset


def parse_answer(message: bytes, query_id: int, name: str, rtype: RecordType) -> Response:
    """Read a response to `query(query_id, name, rtype)`; MalformedError if
    it is not one (wrong id or question: a stray or spoofed datagram)."""
    if len(message) < _HEADER.size:
        raise MalformedError("shorter than a DNS header")
    rid, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(message)
    if rid != query_id or not flags & _FLAG_QR:
        raise MalformedError("not the answer to our query")
    offset = _HEADER.size
    if qdcount != 1:
        raise MalformedError(f"{qdcount} questions")
    qname, offset = _read_name(message, offset)
    if offset + 4 > len(message):
        raise MalformedError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    offset += 4
    if (qname.lower(), qtype, qclass) != (name.rstrip(".").lower(), rtype, CLASS_IN):
        raise MalformedError("answer to another question")
    truncated = bool(flags & _FLAG_TC)
    answers: list[Record] = []
    for _ in range(ancount):
        try:
            owner, offset = _read_name(message, offset)
        except MalformedError:
            if truncated:
                break  # a truncated answer may end anywhere; TCP follows
            raise
        if offset + _RR.size > len(message):
            if truncated:
                break
            raise MalformedError("truncated record")
        kind, rclass, ttl, length = _RR.unpack_from(message, offset)
        offset += _RR.size
        rdata = message[offset : offset + length]
        if len(rdata) != length:
            if truncated:
                break
            raise MalformedError("truncated record data")
        target = None
        if kind == RecordType.CNAME and rclass == CLASS_IN:
            target, _ = _read_name(message, offset)
        offset += length
        if rclass == CLASS_IN:
            answers.append(Record(owner.lower(), kind, ttl, rdata, target))
    return Response(rcode=flags & 0xF, truncated=truncated, answers=tuple(answers))


def txt_strings(rdata: bytes) -> list[bytes]:
    """The character-strings of a TXT record's data."""
    strings: list[bytes] = []
    offset = 0
    while offset < len(rdata):
        length = rdata[offset]
        chunk = rdata[offset + 1 : offset + 1 + length]
        if len(chunk) != length:
            raise MalformedError("TXT string runs past its record")
        strings.append(chunk)
        offset += 1 + length
    return strings


def records_for(response: Response, name: str, rtype: RecordType) -> list[Record]:
    """The answer's records of `rtype` at `name`, following CNAMEs in the
    answer for other types (as a resolver's answer holds the chain)."""
    current = name.rstrip(".").lower()
    for _ in range(_MAX_POINTERS):
        found = [r for r in response.answers if r.name == current and r.rtype == rtype]
        if found or rtype == RecordType.CNAME:
            return found
        alias = next((r.target for r in response.answers if r.name == current and r.target), None)
        if alias is None:
            return []
        current = alias.lower()
    return []
