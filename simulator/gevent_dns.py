"""The fleet's DNS on a Locust worker: one caching resolver per process.

The same idea as `shared_dns` (one real query per name per TTL, however
many devices ask; each device gets the TTL that remains; failures are not
cached), for gevent: dnspython's blocking resolver is cooperative once
gevent has patched the socket module, and concurrent askers of one name
wait on the first one's query. Endpoint host names (A records for the TCP
connect) are cached for a few seconds too, as a device's stub resolver
would, so ten thousand devices reconnecting do not send ten thousand
queries to the network's resolver.
"""

from __future__ import annotations

import socket
import time

import dns.exception
import dns.rdatatype
import dns.resolver
import gevent.event

from iotdr.agent.core.events import DnsAnswered, DnsFailed, Event
from iotdr.simulator.shared_dns import CachedAnswer, cname_answer, lookup_failed, txt_text

_ADDRESS_CACHE_S = 5.0


class GeventDns:
    def __init__(self, timeout_s: float = 2.0) -> None:
        self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = timeout_s
        self._resolver.timeout = timeout_s
        self._resolver.cache = None  # ours honours the TTL per name below
        self._cache: dict[tuple[str, str | None], CachedAnswer] = {}
        self._pending: dict[
            tuple[str, str | None], gevent.event.AsyncResult[CachedAnswer | DnsFailed]
        ] = {}
        self._addresses: dict[str, tuple[str, float]] = {}
        self.queries = 0

    def resolve(self, name: str, txt_name: str | None) -> Event:
        """The CNAME (and TXT) the core asked for; blocks this greenlet only."""
        key = (name, txt_name)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is None or cached.expires_at <= now:
            pending = self._pending.get(key)
            if pending is None:
                pending = gevent.event.AsyncResult()
                self._pending[key] = pending
                try:
                    pending.set(self._query(name, txt_name))
                finally:
                    self._pending.pop(key, None)
            result = pending.get()
            now = time.monotonic()
            if isinstance(result, DnsFailed):
                return DnsFailed(now=now, failure=result.failure, detail=result.detail)
            assert result is not None
            cached = self._cache[key] = result
        return DnsAnswered(
            now=now, target=cached.target, ttl=max(0.0, cached.expires_at - now), txt=cached.txt
        )

    def address(self, host: str) -> str:
        """An IPv4 address of `host`, cached for a few seconds; raises OSError."""
        cached = self._addresses.get(host)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        infos = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
        address = str(infos[0][4][0])
        self._addresses[host] = (address, time.monotonic() + _ADDRESS_CACHE_S)
        return address

    def _query(self, name: str, txt_name: str | None) -> CachedAnswer | DnsFailed:
        self.queries += 1
        try:
            answer = self._resolver.resolve(name, dns.rdatatype.CNAME)
        except dns.exception.DNSException as exc:
            return lookup_failed(exc)
        target, expires_at = cname_answer(answer)
        txt = None
        if txt_name:
            try:
                txt = txt_text(self._resolver.resolve(txt_name, dns.rdatatype.TXT))
            except dns.exception.DNSException:
                txt = None
        return CachedAnswer(target=target, txt=txt, expires_at=expires_at)
