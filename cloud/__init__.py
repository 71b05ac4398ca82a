"""iotdr.cloud: the cloud side of iotdr on AWS IoT Core.

Replicates the registry (things, thing types, thing groups, certificates,
policies) and device shadows between two regions in both directions,
checks the health of a region's MQTT broker for Route 53, deploys the
CloudFormation stacks and the failover DNS records the agent watches, and
syncs and compares regions. Pure logic lives in `events`, `merge` and
`records`; boto3 adapters in `registry_apply`, `shadow_apply`, `worker`,
`sync`, `compare` and `deploy`.
"""

from iotdr.cloud.errors import (
    CloudError,
    DeploymentError,
    EventFormatError,
    ReplicationConflictError,
)

__all__ = ["CloudError", "DeploymentError", "EventFormatError", "ReplicationConflictError"]
