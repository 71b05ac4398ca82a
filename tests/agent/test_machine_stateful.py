"""Hypothesis drives the core through random faults in virtual time; the
world (world.py) checks the invariants on every step:
- one connection target at a time (no Connect while another is open);
- never two CONNECTs of one client id within a second;
- a DNS failure or refused answer never connects or disconnects.
Here we add: when an endpoint is reachable the agent ends up connected, and
failbacks are at least a stability window apart (no flapping)."""

from __future__ import annotations

import itertools

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from iotdr.agent.core.endpoints import Endpoint
from tests.agent.world import PRIMARY, SECONDARY, DnsMode, Health, World, make_settings

ENDPOINTS = st.sampled_from([PRIMARY, SECONDARY])


class AgentInAFaultyWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None

    @rule(seed=st.integers(0, 2**32 - 1), failback=st.booleans())
    @precondition(lambda self: self.world is None)
    def start(self, seed: int, failback: bool) -> None:
        self.world = World(make_settings(failback__enabled=failback), seed=seed)
        self.world.start()

    @rule(endpoint=ENDPOINTS, health=st.sampled_from(list(Health)))
    @precondition(lambda self: self.world is not None)
    def fault(self, endpoint: Endpoint, health: Health) -> None:
        assert self.world is not None
        self.world.set_health(endpoint, health)

    @rule(endpoint=ENDPOINTS, delay=st.floats(0.5, 10.0))
    @precondition(lambda self: self.world is not None)
    def jitr(self, endpoint: Endpoint, delay: float) -> None:
        assert self.world is not None
        self.world.jitr_pending[endpoint] = self.world.now + delay

    @rule(endpoint=ENDPOINTS)
    @precondition(lambda self: self.world is not None)
    def move_cname(self, endpoint: Endpoint) -> None:
        assert self.world is not None
        self.world.cname = endpoint

    @rule(mode=st.sampled_from(list(DnsMode)))
    @precondition(lambda self: self.world is not None)
    def dns(self, mode: DnsMode) -> None:
        assert self.world is not None
        self.world.dns_mode = mode

    @rule(seconds=st.floats(0.001, 30.0))
    @precondition(lambda self: self.world is not None)
    def wait(self, seconds: float) -> None:
        assert self.world is not None
        self.world.run_until(self.world.now + seconds)

    @rule(flaps=st.integers(2, 40))
    @precondition(lambda self: self.world is not None)
    def flap_primary(self, flaps: int) -> None:
        world = self.world
        assert world is not None
        for i in range(flaps):
            world.set_health(PRIMARY, Health.UP if i % 2 else Health.REFUSING)
            world.run_until(world.now + 1.0)

    @invariant()
    def failbacks_are_a_window_apart(self) -> None:
        if self.world is None:
            return
        window = self.world.settings.failback.stability_window_s
        times = self.world.failback_times
        assert all(b - a >= window for a, b in itertools.pairwise(times))

    def teardown(self) -> None:
        """Heal one endpoint and wait out the longest backoff: connected."""
        world = self.world
        if world is None:
            return
        world.set_health(SECONDARY, Health.UP)
        world.jitr_pending.clear()
        world.run_until(world.now + world.settings.backoff.max_s + 10.0)
        assert world.connected_to() is not None, world.machine.snapshot()


AgentInAFaultyWorld.TestCase.settings = hypothesis_settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestAgentInAFaultyWorld = AgentInAFaultyWorld.TestCase
