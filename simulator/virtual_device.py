"""What the virtual-time engine keeps for one device beside its core (pure).

One object per device, so a visit to a device finds its engine-side state
in one place rather than in half a dozen fleet-wide arrays (at a million
devices each is a cache miss of its own), and compiled (mypyc) every field
is a C value read without boxing.
"""

from __future__ import annotations

from iotdr.simulator.device import Connection
from iotdr.simulator.virtual_rng import SplitMix64


class VirtualDevice(SplitMix64):
    """A device's world draws (a SplitMix64 stream of its own, so they do
    not depend on the order devices are worked through: `draw`), the
    attempt it has in flight and the connection it has."""

    __slots__ = ("attempt", "attempt_region", "attempt_why", "connection", "region")

    def __init__(self, world_seed: int) -> None:
        super().__init__(world_seed)
        self.attempt = 0  # the Connect in flight (its attempt id), 0 for none
        self.attempt_region = 0  # ... the region it goes to
        self.attempt_why = 0  # ... and why (an index of virtual_fleet.WHYS)
        self.connection: Connection | None = None  # the connection up now
        self.region = -1  # ... and its region (-1: none)

    def draw(self) -> float:
        """The device's next draw from the world's latencies, in [0, 1)."""
        return self.random()
