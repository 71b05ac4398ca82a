"""Log text that is put together only when it is read (pure).

The core explains what it does in `Report`s and keeps its last error for
status. The daemon reads every one; a simulated fleet of a million devices
makes some ten million and reads none, and formatting them (endpoint
names, roles, enum values, floats) was a tenth of its instructions. A
`Text` keeps the template and its arguments instead, all of them values
that never change, and gives the very string an f-string would have given
when `str()` is called.
"""

from __future__ import annotations


class Text:
    """`template.format(*args).rstrip(strip)` when read: `strip` as
    `str.rstrip` takes it (`None`: whitespace; the default "": nothing)."""

    __slots__ = ("args", "strip", "template")

    def __init__(self, template: str, *args: object, strip: str | None = "") -> None:
        self.template = template
        self.args = args
        self.strip = strip

    def __str__(self) -> str:
        return self.template.format(*self.args).rstrip(self.strip)

    def __repr__(self) -> str:
        return f"Text({str(self)!r})"

    # Two texts are equal when they read the same, as the strings were.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Text):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))
