"""The fleet's DNS: one caching resolver in front of the real DNS server.

Real devices ask their network's recursive resolver, which caches each
answer for its TTL; so does this one, shared by every simulated device:
one real query (dnspython, through the system resolver configuration, so
inside a testbed namespace it asks the testbed's Knot) per name per TTL,
however large the fleet, and each device's core gets the answer with the
TTL that remains, as it would from a caching resolver. Failures are not
cached. Interpreting answers stays the core's job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from iotdr.agent.core.events import DnsAnswered, DnsFailed, DnsFailure, Event


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A CNAME answer and its TXT, until `expires_at` (monotonic)."""

    target: str
    txt: str | None
    expires_at: float


def lookup_failed(exc: dns.exception.DNSException) -> DnsFailed:
    """The core's event for a failed CNAME lookup."""
    detail = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return DnsFailed(now=time.monotonic(), failure=dns_failure_kind(exc), detail=detail)


def cname_answer(answer: dns.resolver.Answer) -> tuple[str, float]:
    """The CNAME target and when it expires (monotonic)."""
    rrset = answer.rrset
    assert rrset is not None
    return str(next(iter(rrset)).target).rstrip("."), time.monotonic() + rrset.ttl


def txt_text(records: dns.resolver.Answer) -> str:
    """A TXT answer's strings joined, as the agent reads them."""
    return "".join(part.decode("utf-8", "replace") for record in records for part in record.strings)


def dns_failure_kind(exc: Exception) -> DnsFailure:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DnsFailure.NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DnsFailure.NO_ANSWER
    if isinstance(exc, dns.exception.Timeout):
        return DnsFailure.TIMEOUT
    if isinstance(exc, dns.resolver.NoNameservers):
        return DnsFailure.SERVFAIL
    return DnsFailure.OTHER


class SharedDns:
    def __init__(self, timeout_s: float = 2.0) -> None:
        self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout_s
        self._resolver.timeout = timeout_s
        self._resolver.cache = None  # ours honours the TTL per name below
        self._cache: dict[tuple[str, str | None], CachedAnswer] = {}
        self._pending: dict[tuple[str, str | None], asyncio.Task[CachedAnswer | DnsFailed]] = {}
        self.queries = 0

    async def resolve(self, name: str, txt_name: str | None) -> Event:
        key = (name, txt_name)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached.expires_at > now:
            return DnsAnswered(
                now=now, target=cached.target, ttl=cached.expires_at - now, txt=cached.txt
            )
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._query(name, txt_name))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        result = await task
        now = time.monotonic()
        if isinstance(result, DnsFailed):
            return DnsFailed(now=now, failure=result.failure, detail=result.detail)
        self._cache[key] = result
        return DnsAnswered(
            now=now, target=result.target, ttl=max(0.0, result.expires_at - now), txt=result.txt
        )

    async def _query(self, name: str, txt_name: str | None) -> CachedAnswer | DnsFailed:
        self.queries += 1
        try:
            answer = await self._resolver.resolve(name, dns.rdatatype.CNAME)
        except dns.exception.DNSException as exc:
            return lookup_failed(exc)
        target, expires_at = cname_answer(answer)
        txt = None
        if txt_name:
            try:
                txt = txt_text(await self._resolver.resolve(txt_name, dns.rdatatype.TXT))
            except dns.exception.DNSException:
                txt = None
        return CachedAnswer(target=target, txt=txt, expires_at=expires_at)
