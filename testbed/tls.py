"""TLS contexts for testbed clients and the JITR gate.

Clients inside the namespace often connect to a region's *address* (no
resolver involved) but must still verify the region's *host name*, as a
device connecting by name would. `client_context(server_hostname=...)`
makes every socket it wraps check that name, whatever address the caller
(paho, for one, passes its connect host) asked for.
"""

import socket
import ssl
from pathlib import Path


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails.

    paho does the handshake on a socket it then drops without closing when
    the handshake fails (a rogue certificate, say), which leaks the socket
    and, under `-W error`, turns its ResourceWarning into an error.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _PinnedHostnameContext(ssl.SSLContext):
    pinned_hostname: str | None = None

    def wrap_socket(  # noqa: PLR0917 (the signature of ssl.SSLContext.wrap_socket)
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.pinned_hostname or server_hostname,
            session=session,
        )


def client_context(
    ca_file: Path, cert_file: Path, key_file: Path, *, server_hostname: str | None = None
) -> ssl.SSLContext:
    """Mutual-TLS client context verifying the server against `ca_file`.

    With `server_hostname`, that name (SNI and certificate check) is used for
    every connection instead of whatever host the caller connects to.
    """
    context = _PinnedHostnameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.sslsocket_class = _ClosingSSLSocket
    context.pinned_hostname = server_hostname
    context.load_verify_locations(cafile=str(ca_file))
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def server_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server context that requires a client certificate signed by `ca_file`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    context.verify_mode = ssl.CERT_REQUIRED
    return context
