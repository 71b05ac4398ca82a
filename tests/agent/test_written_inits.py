"""Events and commands write their `__init__` out (so mypyc compiles it):
each one must take exactly the dataclass's fields, with their defaults,
and set every one of them."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, FrozenInstanceError, fields, replace

import pytest

from iotdr.agent.core import commands, events, machine_state, topology
from iotdr.agent.core.endpoints import Endpoint, RegionRoles
from iotdr.agent.core.settings import Settings, TlsSettings
from tests.agent.world import make_settings

CLASSES = [
    cls
    for module in (events, commands)
    for cls in vars(module).values()
    if inspect.isclass(cls)
    and cls.__module__ == module.__name__
    and issubclass(cls, (events.Event, commands.Command))
]


def test_every_event_and_command_is_checked() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"TimerFired", "ProbeCompleted", "ConnectFailed", "ArmTimer", "Probe", "Report"} <= names
    assert len(CLASSES) >= 20


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_init_takes_the_fields_and_sets_them(cls: type) -> None:
    declared = fields(cls)
    if not declared:  # the Command base: nothing to set
        assert cls() == cls()
        return
    parameters = list(inspect.signature(vars(cls)["__init__"]).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in declared]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    for parameter, field in zip(parameters, declared, strict=True):
        default = inspect.Parameter.empty if field.default is MISSING else field.default
        assert parameter.default == default, field.name
    values = {f.name: object() for f in declared}  # a distinct marker each
    instance = cls(**values)
    assert all(getattr(instance, name) is value for name, value in values.items())
    with pytest.raises(FrozenInstanceError):
        setattr(instance, declared[0].name, None)


# The core's own state, which every device builds: the same rule. Some
# take only what varies and start the rest as the dataclass would.
STATE = [machine_state.DnsView, topology.Topology]
# Values a class works on (a Topology orders its endpoints when built).
STATE_VALUES: dict[type, dict[str, object]] = {
    topology.Topology: {
        "primary": Endpoint(host="a.iot.region-a.example"),
        "secondary": Endpoint(host="a.iot.region-b.example"),
        "dns_target": Endpoint(host="b.iot.region-a.example"),
        "roles": RegionRoles(primary="region-a", secondary="region-b"),
    }
}
STATE_FROM_ARGS: dict[type, dict[str, object]] = {
    machine_state.Prober: {"window_s": 3.0},
    machine_state.DnsMoves: {"hold_s": 3.0},
    machine_state.Attempt: {"id": 1, "endpoint": object(), "why": object()},
    machine_state.Counters: {"failovers": 1, "failbacks": 2, "last_failover_s": 3.0},
    machine_state.Round: {},
}


@pytest.mark.parametrize("cls", STATE, ids=lambda cls: cls.__name__)
def test_state_init_takes_the_fields_with_their_defaults(cls: type) -> None:
    declared = [f for f in fields(cls) if f.init]  # the others it works out
    parameters = list(inspect.signature(vars(cls)["__init__"]).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in declared]
    for parameter, field in zip(parameters, declared, strict=True):
        default = inspect.Parameter.empty if field.default is MISSING else field.default
        assert parameter.default == default, field.name
    values = STATE_VALUES.get(cls) or {f.name: object() for f in declared}
    instance = cls(**values)
    assert all(getattr(instance, name) is value for name, value in values.items())


@pytest.mark.parametrize("cls", list(STATE_FROM_ARGS), ids=lambda cls: cls.__name__)
def test_state_init_sets_every_field(cls: type) -> None:
    given = STATE_FROM_ARGS[cls]
    instance = cls(**given)
    for field in fields(cls):
        value = getattr(instance, field.name)  # unset would raise AttributeError
        if field.name in given:
            assert value is given[field.name]
    assert repr(instance) == repr(cls(**given))  # each starts the same, fresh


def test_settings_init_takes_the_fields_and_fills_in_the_defaults() -> None:
    declared = fields(Settings)
    parameters = list(inspect.signature(vars(Settings)["__init__"]).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in declared]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)
    values = {f.name: object() for f in declared}
    given = Settings(**values)  # type: ignore[arg-type]
    assert all(getattr(given, name) is value for name, value in values.items())
    tls = TlsSettings(ca_file="a", cert_file="b", key_file="k")
    built = Settings(client_id="c", tls=tls)
    for field in declared:
        if field.name in ("client_id", "tls"):
            continue
        if field.default is not MISSING:
            expected = field.default
        else:
            assert field.default_factory is not MISSING
            expected = field.default_factory()
        assert getattr(built, field.name) == expected, field.name


def test_settings_with_identity_is_replace() -> None:
    settings = make_settings(dns={"name": "iot.example.test"}, heartbeat={"topic": "hb"})
    tls = TlsSettings(ca_file="a", cert_file="b", key_file="k")
    copy = settings.with_identity("dev-2", tls)
    assert copy == replace(settings, client_id="dev-2", tls=tls)
    assert all(
        getattr(copy, f.name) is getattr(settings, f.name)
        for f in fields(Settings)
        if f.name not in ("client_id", "tls")
    )
