"""The core's dispatch agrees with its table.

`TRANSITIONS` and `ANY_STATE` name the handler of each (state, event);
`Machine._call` calls a handler by name through a written-out chain, so
that compiled code calls each method directly. These tests hold the two
together: every name the tables give calls the method of that name, and
the chain names nothing else."""

from __future__ import annotations

import inspect
import random
import re

import pytest

from iotdr.agent.core.events import Started
from iotdr.agent.core.machine import ANY_STATE, ROWS, TRANSITIONS, Machine, State
from tests.agent.world import make_settings

NAMES = {*TRANSITIONS.values(), *ANY_STATE.values()}


def _spy() -> tuple[Machine, list[str]]:
    """A machine whose handlers only record that they were called."""
    calls: list[str] = []

    def recorder(name: str) -> object:
        return lambda self, event: calls.append(name)

    spy = type("Spy", (Machine,), {name: recorder(name) for name in NAMES})
    return spy(make_settings(), random.Random(0)), calls


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_name_calls_the_method_of_that_name(name: str) -> None:
    machine, calls = _spy()
    machine._call(name, Started(now=0.0))
    assert calls == [name]


def test_the_chain_names_exactly_the_tables_handlers() -> None:
    source = inspect.getsource(Machine._call)
    assert set(re.findall(r'name == "(\w+)"', source)) == NAMES


def test_a_name_outside_the_tables_is_a_bug() -> None:
    machine, _ = _spy()
    with pytest.raises(AssertionError):
        machine._call("_nothing", Started(now=0.0))


def test_each_row_is_the_states_transitions_then_the_watchers() -> None:
    for state in State:
        for event_type in {t for _, t in TRANSITIONS} | set(ANY_STATE):
            expected = TRANSITIONS.get((state, event_type))
            if expected is None and state is not State.IDLE:
                expected = ANY_STATE.get(event_type)
            assert ROWS[state].get(event_type) == expected, (state, event_type)


def test_a_new_machine_reads_the_idle_row() -> None:
    # Every later change of state is checked on every step of world.py.
    machine = Machine(make_settings(), random.Random(0))
    assert machine._row is ROWS[State.IDLE]
