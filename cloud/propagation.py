"""Waiting out AWS IoT's eventual consistency: deletes right after a detach.

DetachThingPrincipal "is asynchronous. It might take several seconds for
the detachment to propagate"
(https://docs.aws.amazon.com/iot/latest/apireference/API_DetachThingPrincipal.html).
Until it has, DeleteThing answers `InvalidRequestException` ("... is still
attached to one or more principals") and DeleteCertificate answers
`DeleteConflictException`. `until_detached` retries exactly those answers
with capped exponential backoff (tenacity) for a bounded time; any other
error is raised at once, and the last one is raised when time runs out.

The clock is injected (`Patience.sleep`), so tests need not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity
from botocore.exceptions import ClientError

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Patience:
    """How long to wait for a detach to propagate: waits of first_wait_s,
    doubling up to max_interval_s, until max_wait_s or max_attempts."""

    first_wait_s: float = 0.5
    max_interval_s: float = 8.0
    max_wait_s: float = 60.0
    max_attempts: int = 12  # 0.5 + 1 + 2 + 4 + 8 x 7: about a minute of waits
    sleep: Callable[[float], None] = time.sleep


def still_attached(exc: BaseException) -> bool:
    """AWS's documented answers while a detach is still propagating."""
    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    if code == "InvalidRequestException":
        return "attached" in message.lower()
    return code == "DeleteConflictException"


def until_detached(call: Callable[[], T], patience: Patience) -> T:
    """`call()`, retried while AWS says a principal is still attached."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(still_attached),
        wait=tenacity.wait_exponential(
            multiplier=patience.first_wait_s, max=patience.max_interval_s
        ),
        stop=tenacity.stop_after_delay(patience.max_wait_s)
        | tenacity.stop_after_attempt(patience.max_attempts),
        sleep=patience.sleep,
        reraise=True,
    )
    return retrying(call)
