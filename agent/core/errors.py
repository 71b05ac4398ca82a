"""The core's exceptions (pure).

They live apart from the modules that raise them so that a build which
compiles the core with mypyc (`simulator/compiled_build.py`, for the
virtual-time simulator) can leave this one module interpreted: mypyc's
native classes cannot subclass ValueError or RuntimeError. Each is
re-exported where it used to be defined.
"""

from __future__ import annotations


def one_line(text: str, limit: int = 120) -> str:
    """`text` safe for a single log line: control characters escaped,
    long text cut (hostile input must not flood or forge log lines)."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else f"{escaped[:limit]}... ({len(text)} characters)"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; names file and key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = one_line(key)
        self.problem = one_line(problem, 300)
        super().__init__(f"{source}: {self.key}: {self.problem}")


class TxtError(ValueError):
    """The TXT record does not hold the expected JSON object."""


class MachineError(RuntimeError):
    """The caller broke the core's contract (e.g. an event before Started)."""
