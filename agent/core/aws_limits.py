"""AWS IoT Core message limits, checked before a message enters the spool
(pure). A message that breaks them can never be delivered, so it goes to
the dead letters with the reason instead of being retried forever.

AWS IoT Core quotas: payload at most 128 KB; topic at most 256 bytes (UTF-8)
and at most 7 forward slashes; topics starting with `$aws/` are reserved.
"""

from __future__ import annotations

MAX_PAYLOAD_BYTES = 128 * 1024
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
RESERVED_PREFIX = "$aws/"


def limit_violation(topic: str, payload: bytes, *, allow_reserved: bool = False) -> str | None:
    """Why AWS IoT would refuse this publish, or None if it would not."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return f"payload of {len(payload)} bytes exceeds AWS IoT's {MAX_PAYLOAD_BYTES}"
    encoded = topic.encode("utf-8")
    if not topic:
        return "empty topic"
    if len(encoded) > MAX_TOPIC_BYTES:
        return f"topic of {len(encoded)} bytes exceeds AWS IoT's {MAX_TOPIC_BYTES}"
    if topic.count("/") > MAX_TOPIC_SLASHES:
        return f"topic has {topic.count('/')} slashes; AWS IoT allows {MAX_TOPIC_SLASHES}"
    if "+" in topic or "#" in topic:
        return "wildcards are not allowed in a topic name"
    if topic.startswith(RESERVED_PREFIX) and not allow_reserved:
        return f"{RESERVED_PREFIX} topics are reserved (set allow_reserved on the mapping)"
    return None


def filter_violation(topic_filter: str, *, aws: bool) -> str | None:
    """Why a broker would refuse this topic filter (MQTT 3.1.1 section
    4.7.1: `#` only as the whole last level, `+` only as a whole level), or
    None. `aws`: AWS IoT's limits on length and slashes apply too."""
    if not topic_filter:
        return "empty topic filter"
    levels = topic_filter.split("/")
    for n, level in enumerate(levels):
        if "#" in level and (level != "#" or n != len(levels) - 1):
            return "'#' must be the whole last level of a topic filter"
        if "+" in level and level != "+":
            return "'+' must be a whole level of a topic filter"
    if aws:
        encoded = topic_filter.encode("utf-8", "surrogatepass")
        if len(encoded) > MAX_TOPIC_BYTES:
            return f"topic filter of {len(encoded)} bytes exceeds AWS IoT's {MAX_TOPIC_BYTES}"
        if len(levels) - 1 > MAX_TOPIC_SLASHES:
            return f"topic filter has {len(levels) - 1} slashes; AWS IoT allows {MAX_TOPIC_SLASHES}"
    return None
