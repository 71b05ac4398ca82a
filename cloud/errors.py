"""The one exception hierarchy of iotdr.cloud: every failure it reports is a CloudError."""


class CloudError(Exception):
    """Base of every error iotdr.cloud raises on purpose."""


class EventFormatError(CloudError):
    """A rule message that is not a registry or shadow event in AWS's documented format."""


class ReplicationConflictError(CloudError):
    """The target region holds something the event cannot be applied over.

    Example: AWS IoT cannot move a thing group under another parent, so a
    hierarchy event naming a different parent than the target's is refused.
    """


class DeploymentError(CloudError):
    """A stack failed to deploy or a deployment check failed."""
