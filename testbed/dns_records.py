"""The testbed zone's data: the records faults change, the TSIG key, zone text."""

import base64
import secrets
from dataclasses import dataclass

import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT

from iotdr.testbed.topology import (
    CNAME_NAME,
    DNS_ADDRESS,
    REGIONS,
    TSIG_KEY_NAME,
    TXT_NAME,
    ZONE,
)

TSIG_ALGORITHM = "hmac-sha256"
# A TXT character-string holds at most 255 bytes (RFC 1035 3.3); longer text
# is split over several strings, which readers concatenate.
_TXT_CHUNK = 255
# Negative answers (NXDOMAIN) are cached for the SOA minimum (RFC 2308), so it
# is kept short for agents to notice a healed zone quickly.
_NEGATIVE_TTL = 5
_DEFAULT_TTL = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str  # base64

    @classmethod
    def generate(cls) -> "TsigKey":
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        return cls(name=TSIG_KEY_NAME, algorithm=TSIG_ALGORITHM, secret=secret)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRecords:
    """What the CNAME and TXT record say; the region A records never change."""

    cname_target: str  # without the trailing dot
    cname_ttl: int
    txt: str
    txt_ttl: int


def txt_rdata(text: str) -> dns.rdtypes.ANY.TXT.TXT:
    """The TXT rdata holding `text` (any string, garbage included) verbatim."""
    raw = text.encode()
    chunks = [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def txt_text(strings: list[bytes]) -> str:
    """Inverse of txt_rdata: the text a TXT answer's strings hold."""
    return b"".join(strings).decode(errors="replace")


def zone_text(records: DnsRecords) -> str:
    """The initial zone file; later changes arrive as dynamic updates."""
    lines = [
        f"$ORIGIN {ZONE}.",
        f"$TTL {_DEFAULT_TTL}",
        f"@ SOA ns hostmaster 1 60 30 3600 {_NEGATIVE_TTL}",
        "@ NS ns",
        f"ns A {DNS_ADDRESS}",
    ]
    lines += [f"{region.host}. A {region.address}" for region in REGIONS.values()]
    lines += [
        f"{CNAME_NAME}. {records.cname_ttl} CNAME {records.cname_target}.",
        f"{TXT_NAME}. {records.txt_ttl} TXT {txt_rdata(records.txt).to_text()}",
    ]
    return "\n".join(lines) + "\n"
