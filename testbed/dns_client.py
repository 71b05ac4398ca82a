"""Talks DNS to the testbed's Knot from inside its namespace (dnspython).

Record changes are real RFC 2136 dynamic updates signed with the testbed's
TSIG key, the way Route 53 changes would reach a resolver's view. They, and
the readiness queries, leave from DNS_ADMIN_SOURCE, which the `timeout` DNS
fault lets through.
"""

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from iotdr.testbed.dns_records import DnsRecords, TsigKey, txt_rdata
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.netns import inside
from iotdr.testbed.topology import (
    CNAME_NAME,
    DNS_ADDRESS,
    DNS_ADMIN_SOURCE,
    DNS_PORT,
    TXT_NAME,
    ZONE,
)

_UPDATE_TIMEOUT_S = 5.0


def query(netns: str, name: str, rdtype: str, *, timeout_s: float = 1.0) -> dns.message.Message:
    """One UDP query to the testbed's server; raises dns.exception.Timeout/OSError."""
    request = dns.message.make_query(name, rdtype)
    with inside(netns):
        return dns.query.udp(
            request, DNS_ADDRESS, timeout=timeout_s, port=DNS_PORT, source=DNS_ADMIN_SOURCE
        )


def zone_is_served(netns: str) -> bool:
    """True once the server answers authoritatively for the zone."""
    try:
        response = query(netns, ZONE, "SOA", timeout_s=0.2)
    except (dns.exception.Timeout, OSError):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def _update(tsig: TsigKey) -> dns.update.UpdateMessage:
    keyring = dns.tsigkeyring.from_text({tsig.name: tsig.secret})
    return dns.update.UpdateMessage(
        ZONE,
        keyring=keyring,
        keyname=dns.name.from_text(tsig.name),
        keyalgorithm=dns.name.from_text(tsig.algorithm),
    )


def _send(netns: str, update: dns.update.UpdateMessage, what: str) -> None:
    try:
        with inside(netns):
            response = dns.query.tcp(
                update,
                DNS_ADDRESS,
                timeout=_UPDATE_TIMEOUT_S,
                port=DNS_PORT,
                source=DNS_ADMIN_SOURCE,
            )
    except (dns.exception.DNSException, OSError) as exc:
        raise TestbedError(f"DNS update ({what}) failed: {exc}") from exc
    if response.rcode() != dns.rcode.NOERROR:
        raise TestbedError(f"DNS update ({what}) refused: {dns.rcode.to_text(response.rcode())}")


def apply_records(netns: str, tsig: TsigKey, records: DnsRecords) -> None:
    """Makes the CNAME and TXT records exactly `records` (one atomic update)."""
    update = _update(tsig)
    update.replace(f"{CNAME_NAME}.", records.cname_ttl, "CNAME", f"{records.cname_target}.")
    update.replace(f"{TXT_NAME}.", records.txt_ttl, txt_rdata(records.txt))
    _send(netns, update, "set CNAME and TXT")


def delete_records(netns: str, tsig: TsigKey) -> None:
    """Deletes the CNAME and TXT records, so both names answer NXDOMAIN."""
    update = _update(tsig)
    update.delete(f"{CNAME_NAME}.", "CNAME")
    update.delete(f"{TXT_NAME}.", "TXT")
    _send(netns, update, "delete CNAME and TXT")
