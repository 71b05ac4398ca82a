"""DNS messages: tables of answers, and a fuzz target (only MalformedError
may escape the parser, whatever the bytes)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotdr.agent.dns_wire import (
    MalformedError,
    RecordType,
    encode_name,
    parse_answer,
    query,
    records_for,
    txt_strings,
)

NAME = "iot.example.com"
QID = 0x1234


def header(flags: int = 0x8180, an: int = 0, qid: int = QID) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, 1, an, 0, 0)


def question(name: str = NAME, rtype: int = RecordType.CNAME) -> bytes:
    return encode_name(name) + struct.pack("!HH", rtype, 1)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


QNAME_POINTER = b"\xc0\x0c"  # the question's name, right after the header


def test_query_asks_recursively_with_edns() -> None:
    wire = query(QID, NAME, RecordType.TXT)
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire)
    assert (qid, flags, qd, an, ns, ar) == (QID, 0x0100, 1, 0, 0, 1)
    assert wire[12:].startswith(b"\x03iot\x07example\x03com\x00\x00\x10\x00\x01")


@pytest.mark.parametrize(
    "name", ["", ".", "a..b", "x" * 64 + ".com", ".".join(["a" * 60] * 5), "café.example"]
)
def test_names_that_cannot_be_asked(name: str) -> None:
    with pytest.raises(ValueError):
        encode_name(name)


def test_compressed_cname_with_its_case_kept() -> None:
    target = b"\x0aA1-ats-Xyz\x03iot\x09us-east-1" + b"\xc0\x10"  # + "example.com"
    message = header(an=1) + question() + rr(QNAME_POINTER, 5, 60, target)
    response = parse_answer(message, QID, "IOT.example.com.", RecordType.CNAME)
    [record] = records_for(response, NAME, RecordType.CNAME)
    assert (record.target, record.ttl) == ("A1-ats-Xyz.iot.us-east-1.example.com", 60)


def test_txt_through_a_cname_chain_in_the_answer() -> None:
    alias = b"\x04real\xc0\x10"
    txt = b"\x03abc\x02de"
    message = (
        header(an=2)
        + question(rtype=RecordType.TXT)
        + rr(QNAME_POINTER, 5, 30, alias)
        + rr(b"\x04real\x07example\x03com\x00", 16, 20, txt)
    )
    response = parse_answer(message, QID, NAME, RecordType.TXT)
    [record] = records_for(response, NAME, RecordType.TXT)
    assert txt_strings(record.rdata) == [b"abc", b"de"]


def test_special_bytes_in_labels_are_escaped() -> None:
    target = b"\x05a.b c\x00"
    message = header(an=1) + question() + rr(QNAME_POINTER, 5, 1, target)
    [record] = parse_answer(message, QID, NAME, RecordType.CNAME).answers
    assert record.target == "a\\.b\\032c"


@pytest.mark.parametrize(
    "message",
    [
        b"\x12",
        header(qid=0x4321) + question(),  # another query's answer
        header(flags=0x0100) + question(),  # a query, not an answer
        header() + question("other.example.com"),
        header() + question(rtype=RecordType.TXT),
        header(an=1) + question() + rr(b"\xc0\x2c", 5, 1, b"\x00"),  # points past the end
        header(an=1) + question() + b"\xc0\x21",  # a pointer to itself
        header(an=1) + question() + rr(QNAME_POINTER, 5, 1, b"\x00")[:-3],
    ],
)
def test_malformed_or_foreign_answers(message: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_answer(message, QID, NAME, RecordType.CNAME)


def test_a_truncated_answer_is_read_as_far_as_it_goes() -> None:
    message = header(flags=0x8380, an=3) + question() + rr(QNAME_POINTER, 5, 1, b"\x00")[:-1]
    response = parse_answer(message, QID, NAME, RecordType.CNAME)
    assert response.truncated and response.answers == ()


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_only_malformed_escapes_the_parser(tail: bytes, flags: bytes) -> None:
    message = header(flags=0x8000 | (int.from_bytes(flags[:2] or b"\0", "big") & 0x7FFF), an=3)
    for body in (tail, question() + tail):
        try:
            response = parse_answer(message + body, QID, NAME, RecordType.CNAME)
            for record in records_for(response, NAME, RecordType.TXT):
                txt_strings(record.rdata)
        except MalformedError:
            pass
