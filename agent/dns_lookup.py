"""DNS adapter: looks up the CNAME and TXT record and reports one event.

Uses the system resolver configuration (/etc/resolv.conf, so a network
namespace's own resolv.conf applies) unless a nameserver is configured.
Every failure becomes a `DnsFailed` event; interpreting answers (allowlist,
TXT JSON) is the core's job.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from iotdr.agent.core.events import DnsAnswered, DnsFailed, DnsFailure, Event
from iotdr.agent.core.settings import DnsSettings


def make_resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver:
    if settings.nameserver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [settings.nameserver]
        resolver.port = settings.port
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = settings.timeout_s
    resolver.timeout = settings.timeout_s
    resolver.cache = None  # the core schedules re-resolution by TTL itself
    return resolver


def _failure(exc: Exception) -> DnsFailure:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsFailure.NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsFailure.NO_ANSWER
    if isinstance(exc, dns.exception.Timeout):
        return DnsFailure.TIMEOUT
    if isinstance(exc, dns.resolver.NoNameservers):
        # Every server answered SERVFAIL/REFUSED or could not be reached.
        return DnsFailure.SERVFAIL
    return DnsFailure.OTHER


async def lookup(
    resolver: dns.asyncresolver.Resolver,
    name: str,
    txt_name: str | None,
    clock: Callable[[], float],
) -> Event:
    """Resolve the CNAME (and the TXT); the event is stamped when the
    answer is in."""
    try:
        answer = await resolver.resolve(name, dns.rdatatype.CNAME, raise_on_no_answer=True)
    except dns.exception.DNSException as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        return DnsFailed(now=clock(), failure=_failure(exc), detail=detail)
    rrset = answer.rrset
    assert rrset is not None
    target = str(next(iter(rrset)).target).rstrip(".")
    txt: str | None = None
    if txt_name:
        try:
            txt_answer = await resolver.resolve(txt_name, dns.rdatatype.TXT)
            txt = "".join(
                part.decode("utf-8", "replace") for record in txt_answer for part in record.strings
            )
        except dns.exception.DNSException:
            txt = None  # the CNAME alone is still an answer; roles stay as they were
    return DnsAnswered(now=clock(), target=target, ttl=float(rrset.ttl), txt=txt)
