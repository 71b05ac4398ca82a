"""The agent's pure decision core: no sockets, clock, files or global random.

Everything under `iotdr.agent.core` is sans-I/O: time arrives inside events
and randomness through an injected RNG. The daemon (`iotdr.agent`), every
simulated device and the virtual-time simulator (`iotdr.simulator`) run this
same code; the simulator may import from here and nowhere else in the agent.
`tests/agent/test_core_boundary.py` holds both rules.
"""

from iotdr.agent.core.commands import Command
from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.events import Event
from iotdr.agent.core.machine import Machine, Snapshot, State
from iotdr.agent.core.settings import Settings, parse_settings

__all__ = [
    "Command",
    "ConfigError",
    "Event",
    "Machine",
    "Settings",
    "Snapshot",
    "State",
    "parse_settings",
]
