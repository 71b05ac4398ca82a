"""The simulator's dataclasses that write their `__init__` out (so mypyc
compiles it) take exactly their fields, in order, with the generated one's
defaults, and set every one of them."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import pytest

from iotdr.simulator.device import Connection, DeviceRecord
from iotdr.simulator.device_summary import DeviceSummary

CLASSES = [Connection, DeviceRecord, DeviceSummary]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_init_takes_the_fields_and_sets_them(cls: type) -> None:
    declared = fields(cls)
    parameters = list(inspect.signature(vars(cls)["__init__"]).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in declared]
    for parameter, field in zip(parameters, declared, strict=True):
        if field.default is not MISSING:
            assert parameter.default == field.default, field.name
        elif field.default_factory is not MISSING:
            # None stands for a fresh one, as the factory makes.
            assert parameter.default is None, field.name
        else:
            assert parameter.default is inspect.Parameter.empty, field.name
    values = {f.name: object() for f in declared}  # a distinct marker each
    instance = cls(**values)
    assert all(getattr(instance, name) is value for name, value in values.items())


def test_a_record_made_without_its_lists_gets_fresh_ones() -> None:
    first, second = DeviceRecord(client_id="a"), DeviceRecord(client_id="b")
    first.attempts.append(1.0)
    first.connections.append(Connection(attempt=1, region="r", why="x", connected_at=1.0))
    first.failures["refused"] = 1
    first.acknowledged_sequences.add(1)
    assert second == DeviceRecord(client_id="b", attempts=[], connections=[], failures={})
    assert second.acknowledged_sequences == set()
