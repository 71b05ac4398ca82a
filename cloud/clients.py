"""boto3 clients for one region, all with botocore's adaptive retry mode.

Adaptive mode retries throttling and transient errors with backoff and
rate-limits the client itself when throttled, so no call site needs a retry
loop (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
AWS IoT's registry APIs are throttled at 10-100 TPS per account
(https://docs.aws.amazon.com/general/latest/gr/iot-core.html#throttling-limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_iot.client import IoTClient
    from types_boto3_iot_data.client import IoTDataPlaneClient


def retry_config(max_attempts: int = 10, max_pool_connections: int = 50) -> Config:
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
    )


@dataclass(frozen=True)
class RegionClients:
    """The clients iotdr uses in one region."""

    region: str
    iot: IoTClient
    iot_data: IoTDataPlaneClient
    dynamodb: DynamoDBClient

    @classmethod
    def create(
        cls, region: str, *, session: boto3.Session | None = None, endpoint_url: str | None = None
    ) -> RegionClients:
        """`endpoint_url` points every client at one endpoint (moto's server, say)."""
        session = session or boto3.Session()
        config = retry_config()
        return cls(
            region=region,
            iot=session.client("iot", region_name=region, config=config, endpoint_url=endpoint_url),
            iot_data=session.client(
                "iot-data", region_name=region, config=config, endpoint_url=endpoint_url
            ),
            dynamodb=session.client(
                "dynamodb", region_name=region, config=config, endpoint_url=endpoint_url
            ),
        )
