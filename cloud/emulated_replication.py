"""The managed half of the replication path, stood in for on an emulator.

On AWS a registry or shadow change travels: topic rule -> the origin's
replica of the global table -> global table replication -> the peer's
stream -> the worker Lambda. moto runs none of the managed steps: its topic
rules do not fire, its global tables do not replicate, and its Lambda event
source mapping hands each stream record to a Docker container (none here)
and then drops it from the stream. `check-deployment` behind
`--endpoint-url` uses this to carry a message along the same path with real
API calls: the item the rule would write (`records.rule_item`) is put in
both replicas, and the stream record Lambda would get (an INSERT with that
item as its new image) goes to the same `Worker` the Lambda runs, which
reads and writes the peer region through its real APIs.
"""

from __future__ import annotations

import time
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.records import items_from_stream_event, rule_item
from iotdr.cloud.worker import Report, Tables, Worker


class EmulatedReplication:
    def __init__(
        self,
        *,
        origin: RegionClients,
        peer: RegionClients,
        peer_tables: Tables,
        primary_region: str,
    ) -> None:
        self._origin, self._peer, self._tables = origin, peer, peer_tables
        self._primary_region = primary_region

    def replicate(self, topic: str, payload: dict[str, Any]) -> Report:
        """Carries one message from the origin's rule to the peer's worker."""
        serializer = TypeSerializer()
        item = rule_item(topic, payload, origin=self._origin.region, now_s=int(time.time()))
        image = {key: serializer.serialize(value) for key, value in item.items()}
        for region in (self._origin, self._peer):  # the rule's write, then the global table's
            region.dynamodb.put_item(TableName=self._tables.replication, Item=image)
        # The record DynamoDB Streams gives Lambda for that write (NEW_AND_OLD_IMAGES).
        event = {"Records": [{"eventName": "INSERT", "dynamodb": {"NewImage": image}}]}
        worker = Worker(
            local=self._peer,
            peer=self._origin,
            tables=self._tables,
            default_active_region=self._primary_region,
        )
        return worker.process(items_from_stream_event(event))
