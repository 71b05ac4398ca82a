"""Two moto regions wired as a deployment: rule -> global table -> stream -> worker.

moto runs the real boto3 calls of every step but two that it does not
implement: topic rules do not fire (so `publish` writes the item the rule's
DynamoDBv2 action would write, built by the same `rule_item` the sync tools
use) and global tables do not replicate (so `publish` also copies the item
to the other region's replica). Stream records are read from moto's
DynamoDB Streams and handed to the worker as Lambda would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.management import record_management_event
from iotdr.cloud.propagation import Patience
from iotdr.cloud.records import ACTIVE_REGION_KEY, items_from_stream_event, rule_item
from iotdr.cloud.registry_apply import CertificateMode
from iotdr.cloud.tables import create_region_tables
from iotdr.cloud.worker import Report, Tables, Worker

PRIMARY = "us-east-1"
SECONDARY = "us-west-2"
TABLES = Tables(replication="iotdr-replication", applied="iotdr-applied", errors="iotdr-errors")


@dataclass
class MotoRegions:
    clients: dict[str, RegionClients] = field(default_factory=dict)
    _iterators: dict[str, dict[str, str]] = field(default_factory=dict)
    mode: CertificateMode = CertificateMode.COMPLETE
    # Waits of the worker's backoff are recorded, not slept (the clock is injected).
    waits: list[float] = field(default_factory=list)

    @property
    def patience(self) -> Patience:
        return Patience(sleep=self.waits.append)

    @classmethod
    def create(cls, mode: CertificateMode = CertificateMode.COMPLETE) -> MotoRegions:
        regions = cls(mode=mode)
        for region in (PRIMARY, SECONDARY):
            regions.clients[region] = RegionClients.create(region)
            create_region_tables(regions.clients[region].dynamodb, TABLES)
            regions._iterators[region] = {}
            regions.drain(region)  # start at the stream's end
        return regions

    def peer(self, region: str) -> str:
        return SECONDARY if region == PRIMARY else PRIMARY

    def publish(self, origin: str, message: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        item = rule_item(message[0], message[1], origin=origin, now_s=1_700_000_000)
        serializer = TypeSerializer()
        image = {key: serializer.serialize(value) for key, value in item.items()}
        for region in (origin, self.peer(origin)):  # the global table's replication
            self.clients[region].dynamodb.put_item(TableName=TABLES.replication, Item=image)
        return item

    def record_management(self, origin: str, event: dict[str, Any]) -> None:
        """An EventBridge event through the real recorder into the origin's
        replica, then copied to the peer's (the global table's replication)."""
        item = record_management_event(
            self.clients[origin].dynamodb,
            table=TABLES.replication,
            event=event,
            region=origin,
            now_s=1_700_000_000,
        )
        serializer = TypeSerializer()
        self.clients[self.peer(origin)].dynamodb.put_item(
            TableName=TABLES.replication,
            Item={key: serializer.serialize(value) for key, value in item.items()},
        )

    def set_active(self, region: str) -> None:
        for target in (PRIMARY, SECONDARY):
            self.clients[target].dynamodb.put_item(
                TableName=TABLES.replication,
                Item={"pk": {"S": ACTIVE_REGION_KEY}, "region": {"S": region}},
            )

    def drain(self, region: str) -> dict[str, Any]:
        """New records of the region's stream, as a Lambda DynamoDB stream event."""
        dynamodb = self.clients[region].dynamodb
        # botocore >= 1.44 sends stream calls to account-based endpoints
        # (ACCOUNT.streams-ddb.REGION...), which moto 5.2 does not route yet.
        streams = boto3.client(
            "dynamodbstreams",
            region_name=region,
            config=Config(account_id_endpoint_mode="disabled"),
        )
        arn = dynamodb.describe_table(TableName=TABLES.replication)["Table"]["LatestStreamArn"]
        records: list[dict[str, Any]] = []
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            iterator = (
                self._iterators[region].get(shard_id)
                or streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            while True:
                response = streams.get_records(ShardIterator=iterator)
                records.extend(response["Records"])  # type: ignore[arg-type]
                iterator = response["NextShardIterator"]
                if not response["Records"]:
                    break
            self._iterators[region][shard_id] = iterator
        return {"Records": records}

    def worker(self, region: str) -> Worker:
        return Worker(
            local=self.clients[region],
            peer=self.clients[self.peer(region)],
            tables=TABLES,
            default_active_region=PRIMARY,
            mode=self.mode,
            patience=self.patience,
        )

    def replicate(self, region: str, *, replay: bool = False) -> Report:
        """Runs the region's worker on its new stream records (twice with `replay`)."""
        event = self.drain(region)
        report = self.worker(region).process(items_from_stream_event(event))
        if replay:
            self.worker(region).process(items_from_stream_event(event))
        return report
