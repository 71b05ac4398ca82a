"""Embedding the agent in a device's own Python program.

    async with EmbeddedAgent.from_config("/etc/iotdr/agent.yaml",
                                         subscriptions=["cmd/my-thing/#"]) as agent:
        await agent.publish("dt/my-thing/telemetry", b'{"t": 21.5}')
        async for message in agent.messages():
            handle(message.topic, message.payload)

The program gets the same failover, failback and durable spool as the
daemon: `publish` returns once the message is durably spooled (it waits
while the spool is full), and the agent delivers it to whichever region is
active, at least once. Cloud messages on the subscribed filters arrive in
every region the agent lands in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotdr.agent.config_files import LoadedConfig, load_for
from iotdr.agent.daemon import Daemon, EndpointFilter


@dataclass(frozen=True, slots=True)
class CloudMessage:
    topic: str
    payload: bytes


class EmbeddedAgent:
    def __init__(self, loaded: LoadedConfig, *, subscriptions: Sequence[str] = ()) -> None:
        self._daemon = Daemon(loaded, None, Path("/"), EndpointFilter())
        self._subscriptions = tuple(subscriptions)
        self._queue: asyncio.Queue[CloudMessage] = asyncio.Queue()

    @classmethod
    def from_config(
        cls, config: str | Path, *, subscriptions: Sequence[str] = (), root: Path = Path("/")
    ) -> EmbeddedAgent:
        """Layered like the daemon's configuration, `config` last."""
        return cls(load_for(Path(config), root), subscriptions=subscriptions)

    async def __aenter__(self) -> EmbeddedAgent:
        loop = asyncio.get_running_loop()

        def deliver(topic: str, payload: bytes) -> None:  # a CRT thread
            loop.call_soon_threadsafe(self._queue.put_nowait, CloudMessage(topic, payload))

        for topic_filter in self._subscriptions:
            self._daemon.add_cloud_listener(topic_filter, deliver)
        await self._daemon.start(embedded=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._daemon.stop()

    async def publish(self, topic: str, payload: bytes) -> None:
        """Durably spool a message for the active region (QoS 1, at least
        once). Raises ValueError for what AWS IoT would refuse."""
        await asyncio.wrap_future(self._daemon.submit(topic, payload))

    async def messages(self) -> AsyncIterator[CloudMessage]:
        while True:
            yield await self._queue.get()

    def status(self) -> dict[str, Any]:
        return self._daemon.status()
