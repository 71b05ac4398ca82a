"""A simulated device: the agent's core decides, the device keeps every
message until a region acknowledges it."""

from __future__ import annotations

import random

from iotdr.agent.core.commands import ArmTimer, Connect, Disconnect
from iotdr.agent.core.events import (
    ConnectionLost,
    ConnectSucceeded,
    PublishFailed,
    Started,
    TimerFired,
    TimerName,
)
from iotdr.agent.core.failures import FailureKind
from iotdr.agent.core.machine import Machine
from iotdr.simulator.device import Device
from iotdr.simulator.scenario import device_settings

SETTINGS = device_settings(
    {
        "endpoints": {
            "primary": {"host": "x-ats.iot.region-a.example"},
            "secondary": {"host": "x-ats.iot.region-b.example"},
        }
    },
    base={},
    source="test",
)


def _connect(device: Device, now: float) -> Connect:
    commands = device.handle(Started(now=now))
    timer = next(c for c in commands if isinstance(c, ArmTimer))
    commands = device.handle(TimerFired(now=timer.at, timer=TimerName.RECONNECT))
    connect = next(c for c in commands if isinstance(c, Connect))
    device.handle(ConnectSucceeded(now=timer.at + 0.1, attempt=connect.attempt))
    return connect


def test_the_device_runs_the_agents_own_core() -> None:
    device = Device("d-1", SETTINGS, random.Random(1))
    assert type(device.machine) is Machine
    assert device.machine.settings is SETTINGS


def test_messages_wait_while_offline_and_go_once_connected() -> None:
    device = Device("d-1", SETTINGS, random.Random(1))
    for t in range(3):
        device.produce(float(t))
    assert device.take_sendable() == []  # offline: held
    connect = _connect(device, 3.0)
    sent = device.take_sendable()
    assert [m.sequence for m in sent] == [0, 1, 2]
    assert device.region == "region-a"
    for message in sent:
        device.acknowledged(message.sequence, connect.attempt, 4.0)
    assert device.record.acknowledged == 3
    assert device.backlog == 0
    assert device.record.connections[0].first_ack_at == 4.0


def test_a_lost_connection_puts_unacknowledged_messages_back_in_order() -> None:
    device = Device("d-1", SETTINGS, random.Random(2))
    connect = _connect(device, 0.0)
    for t in range(4):
        device.produce(1.0 + t)
    sent = device.take_sendable()
    device.acknowledged(sent[0].sequence, connect.attempt, 5.0)
    device.handle(
        ConnectionLost(now=6.0, attempt=connect.attempt, failure=FailureKind.CLOSED, detail="x")
    )
    assert device.region is None
    assert device.record.connections[0].ended_at == 6.0
    assert device.record.resent == 3
    assert device.take_sendable() == []  # offline again
    assert device.backlog == 3


def test_a_publish_timeout_is_a_dead_path_for_the_core() -> None:
    device = Device("d-1", SETTINGS, random.Random(3))
    connect = _connect(device, 0.0)
    device.produce(1.0)
    (message,) = device.take_sendable()
    device.not_acknowledged(message.sequence)
    commands = device.handle(
        PublishFailed(
            now=4.0, attempt=connect.attempt, failure=FailureKind.TIMEOUT, detail="no PUBACK"
        )
    )
    assert any(isinstance(c, Disconnect) for c in commands)
    assert device.region is None
    assert device.backlog == 1
    assert len(device.record.attempts) == 1  # the next attempt waits for the spread timer


def test_in_flight_is_capped_at_aws_iots_100() -> None:
    device = Device("d-1", SETTINGS, random.Random(4))
    _connect(device, 0.0)
    for t in range(150):
        device.produce(float(t))
    assert len(device.take_sendable()) == 100
    assert device.take_sendable() == []
