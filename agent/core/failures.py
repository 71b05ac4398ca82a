"""Failure kinds and how transport errors map onto them (pure).

The agent reacts differently to each kind: a refused or reset connection is
known within milliseconds; a blackhole (packets vanish) only shows as a
timeout; a TLS or authorisation rejection will not heal by retrying soon; a
JITR hang-up (TLS completes, then the server closes before CONNACK, as AWS
IoT does while just-in-time registration activates a certificate) heals in
seconds and must be retried on a short schedule.
"""

from __future__ import annotations

import enum


class FailureKind(enum.Enum):
    REFUSED = "refused"  # connection refused or reset: the host is up, the service is not
    TIMEOUT = "timeout"  # packets vanish: connect, ping or ack timed out
    TLS = "tls"  # handshake failed: wrong CA, expired or mismatched certificate
    AUTH = "auth"  # CONNACK refused the client (not authorised, bad identity)
    JITR_HANGUP = "jitr-hangup"  # TLS completed, then closed before CONNACK
    CLOSED = "closed"  # an established session was closed by the peer
    RESOLVE = "resolve"  # the endpoint host name did not resolve
    OTHER = "other"

    # Members are singletons, so a hash by identity serves as well as
    # Enum's hash of the name, and runs in C: the core and the virtual
    # engine look members up in tables on every event.
    __hash__ = object.__hash__

    @property
    def proves_no_connect_sent(self) -> bool:
        """True when the attempt failed before an MQTT CONNECT could be sent,
        so it does not count against AWS IoT's 1 CONNECT/s per client id."""
        return self in _BEFORE_CONNECT


_BEFORE_CONNECT = frozenset(
    {FailureKind.REFUSED, FailureKind.TIMEOUT, FailureKind.TLS, FailureKind.RESOLVE}
)

# aws-c-io / aws-c-mqtt error names, as awscrt reports them in exceptions.
_CRT_ERRORS: dict[str, FailureKind] = {
    "AWS_IO_SOCKET_CONNECTION_REFUSED": FailureKind.REFUSED,
    "AWS_IO_SOCKET_CLOSED": FailureKind.CLOSED,
    "AWS_ERROR_MQTT_UNEXPECTED_HANGUP": FailureKind.CLOSED,
    "AWS_IO_BROKEN_PIPE": FailureKind.REFUSED,
    "AWS_IO_SOCKET_TIMEOUT": FailureKind.TIMEOUT,
    "AWS_IO_SOCKET_NO_ROUTE_TO_HOST": FailureKind.TIMEOUT,
    "AWS_IO_SOCKET_NETWORK_DOWN": FailureKind.TIMEOUT,
    "AWS_ERROR_MQTT5_PING_RESPONSE_TIMEOUT": FailureKind.TIMEOUT,
    "AWS_ERROR_MQTT5_CONNACK_TIMEOUT": FailureKind.TIMEOUT,
    "AWS_ERROR_MQTT_TIMEOUT": FailureKind.TIMEOUT,
    "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE": FailureKind.TLS,
    "AWS_IO_TLS_ERROR_NOT_NEGOTIATED": FailureKind.TLS,
    "AWS_IO_TLS_ERROR_ALERT_RECEIVED": FailureKind.TLS,
    "AWS_IO_TLS_NEGOTIATION_TIMEOUT": FailureKind.TIMEOUT,
    "AWS_ERROR_MQTT5_CONNACK_CONNECTION_REFUSED": FailureKind.AUTH,
    "AWS_IO_DNS_INVALID_NAME": FailureKind.RESOLVE,
    "AWS_IO_DNS_QUERY_FAILED": FailureKind.RESOLVE,
    "AWS_IO_DNS_NO_ADDRESS_FOR_HOST": FailureKind.RESOLVE,
}


def classify_connect_error(error_name: str) -> FailureKind:
    """Kind of a failed connection attempt. A close before CONNACK means the
    TLS session was up and the server hung up: the JITR signature."""
    kind = _CRT_ERRORS.get(error_name, FailureKind.OTHER)
    return FailureKind.JITR_HANGUP if kind is FailureKind.CLOSED else kind


def classify_loss(error_name: str) -> FailureKind:
    """Kind of the loss of an established connection."""
    return _CRT_ERRORS.get(error_name, FailureKind.OTHER)
