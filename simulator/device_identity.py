"""One device's settings: the fleet's, with its own identity (pure).

A fleet's devices share every setting but their client id and TLS files,
and a virtual fleet makes a million of them. `dataclasses.replace` would
call `Settings`' generated `__init__`, which stays interpreted even in the
compiled build (simulator/compiled_build.py): 8 µs a device, fifteen
fields set one by one through Python. This copies the fields instead,
compiled (a few hundred nanoseconds), and gives the same settings: no
field is validated on construction, and the fleet's were validated when
they were parsed.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from iotdr.agent.core.settings import Settings, TlsSettings

_IDENTITY: Final = ("client_id", "tls")
_SHARED: Final = tuple(f.name for f in fields(Settings) if f.name not in _IDENTITY)


def with_identity(settings: Settings, client_id: str, tls: TlsSettings) -> Settings:
    """`settings` with `client_id` and `tls` in place of the fleet's."""
    device = Settings.__new__(Settings)
    # Settings is frozen: set as its own __init__ does.
    for name in _SHARED:
        object.__setattr__(device, name, getattr(settings, name))
    object.__setattr__(device, "client_id", client_id)
    object.__setattr__(device, "tls", tls)
    return device
