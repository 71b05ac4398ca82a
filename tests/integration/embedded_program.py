"""A device program embedding the agent (run inside a testbed namespace by
test_embedded.py): publishes N messages through the spool, then prints the
first cloud command it receives and exits."""

from __future__ import annotations

import asyncio
import json
import sys

from iotdr.agent.embedded import EmbeddedAgent


async def main(config: str, count: int) -> None:
    async with EmbeddedAgent.from_config(config, subscriptions=["cmd/dev/#"]) as agent:
        for seq in range(count):
            await agent.publish("dt/dev/telemetry", json.dumps({"seq": seq}).encode())
        try:
            await agent.publish("dt/dev/" + "x/" * 10, b"{}")
        except ValueError as exc:
            print(f"refused: {exc}", flush=True)
        print("published", flush=True)
        async for message in agent.messages():
            print(f"command {message.topic} {message.payload.decode()}", flush=True)
            return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
