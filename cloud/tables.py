"""DynamoDB tables of one region, created directly (tests, benchmarks, local trials).

Deployments create them with CloudFormation (templates/); these are the
same key schemas, so code that runs against one runs against the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient

    from iotdr.cloud.worker import Tables


def create_region_tables(dynamodb: DynamoDBClient, tables: Tables) -> None:
    """The replication table (with its stream), the applied and the error table."""
    create_replication_table(dynamodb, tables.replication)
    for name in (tables.applied, tables.errors):
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name)


def create_replication_table(dynamodb: DynamoDBClient, name: str) -> None:
    """One region's replica of the global table: the same keys and stream."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
