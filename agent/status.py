"""The status document served on the control socket and printed by
`iotdr-agent status --json`.

Fields (times are Unix epoch seconds, durations seconds):
- state: idle | resolving | connecting | connected | waiting | stopped
- connected: true while an MQTT session is up
- endpoint: "host:port" being connected to or connected to, else null
- region: that endpoint's region (third label of the host name), else null
- role: "primary" | "secondary" | "unknown" (from the TXT record, else config)
- since: when the current state began
- preferred: "host:port" the agent returns to when healthy (the CNAME target
  once DNS answered, else the configured primary)
- failovers: connections established on a different endpoint than the one
  before (failover, failback and DNS moves alike)
- failbacks: returns to the preferred endpoint after probes
- last_failover_s: from losing (or leaving) the previous connection to being
  connected on the new endpoint, for the last such move; null if none yet
- stability_window_s: the current failback stability window (doubles after
  a failback that did not hold)
- last_dns: {target, ttl, txt, at} of the last accepted DNS answer, or null
- dns_rejected: answers refused by the endpoint allowlist
- dns_failures: lookups that failed (timeout, SERVFAIL, NXDOMAIN, ...)
- last_error: the latest connection or DNS problem, null after a success
- pid, client_id, config_files, started: about the agent process
- bridge (gateways, when bridge.enabled; embedded programs too):
  - spool: {path, depth (messages), bytes, max_bytes, oldest_age_s,
    dead_letters, recovered_from (where a corrupt file was moved), full
    (at max_bytes), disk_full (the file system refused a write)}
  - received: local messages delivered to the agent
  - spooled: stored durably and acknowledged to the local broker
  - forwarded: PUBLISHes sent to the cloud, resends after failover included
  - acknowledged: PUBACKs that removed a message from the spool
  - dead_lettered: messages AWS IoT would refuse (or refused), kept aside
  - dropped_qos0: dropped under a mapping's drop_oldest_qos0 policy
  - backpressure: times the spool (or its disk) filled and local
    acknowledgements stopped
  - commands: cloud -> local messages delivered
  - pending_local: delivered but not yet spooled (while the spool is full)
"""

from __future__ import annotations

from typing import Any

from iotdr.agent.core.machine import Snapshot


def status_document(
    snapshot: Snapshot, *, mono_now: float, epoch_now: float, extra: dict[str, Any]
) -> dict[str, Any]:
    def epoch(mono: float | None) -> float | None:
        return None if mono is None else round(epoch_now - (mono_now - mono), 3)

    endpoint = snapshot.endpoint
    dns = snapshot.dns
    last_dns = None
    if dns.target is not None:
        last_dns = {
            "target": dns.target,
            "ttl": dns.ttl,
            "txt": dns.txt,
            "at": epoch(dns.answered_at),
        }
    return {
        "state": snapshot.state.value,
        "connected": snapshot.connected,
        "endpoint": str(endpoint) if endpoint else None,
        "region": endpoint.region if endpoint else None,
        "role": snapshot.role.value,
        "since": epoch(snapshot.since),
        "preferred": str(snapshot.preferred) if snapshot.preferred else None,
        "failovers": snapshot.failovers,
        "failbacks": snapshot.failbacks,
        "last_failover_s": (
            None if snapshot.last_failover_s is None else round(snapshot.last_failover_s, 3)
        ),
        "stability_window_s": snapshot.stability_window_s,
        "last_dns": last_dns,
        "dns_rejected": dns.rejected,
        "dns_failures": dns.failures,
        "last_error": snapshot.last_error,
        **extra,
    }
