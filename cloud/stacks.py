"""CloudFormation stacks: create or update one and wait; delete one and wait.

Waiting uses boto3's own waiters (stack_create_complete & co.), which poll
DescribeStacks and stop on a terminal state. A stack that failed is reported
with the reasons from its events, the first thing anyone asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError, WaiterError

from iotdr.cloud.errors import DeploymentError

if TYPE_CHECKING:
    from types_boto3_cloudformation.client import CloudFormationClient
    from types_boto3_cloudformation.type_defs import WaiterConfigTypeDef

# Stacks take minutes (a global table replica: up to half an hour); poll
# every 10 s for up to an hour rather than the waiters' 30 s x 120.
WAITER_CONFIG: WaiterConfigTypeDef = {"Delay": 10, "MaxAttempts": 360}
_NOTHING_TO_UPDATE = "No updates are to be performed"

Say = Callable[[str], None]


def stack_status(cloudformation: CloudFormationClient, name: str) -> str | None:
    """The stack's status, or None when there is no such stack (or only a deleted one)."""
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in exc.response["Error"].get("Message", ""):
            return None
        raise
    status = stacks[0]["StackStatus"] if stacks else None
    return None if status in (None, "DELETE_COMPLETE") else status


def stack_outputs(cloudformation: CloudFormationClient, name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", []) if "OutputKey" in o}


def deploy_stack(
    cloudformation: CloudFormationClient,
    name: str,
    *,
    template_body: str,
    parameters: Mapping[str, str],
    say: Say,
) -> dict[str, str]:
    """Creates the stack or updates it in place; returns its outputs."""
    status = stack_status(cloudformation, name)
    if status == "ROLLBACK_COMPLETE":  # a failed first create can only be deleted
        raise DeploymentError(f"stack {name} failed to create earlier: run `iotdr cloud destroy`")
    arguments = {
        "StackName": name,
        "TemplateBody": template_body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        # The templates create IAM roles (without fixed names).
        "Capabilities": ["CAPABILITY_IAM"],
    }
    if status is None:
        say(f"creating stack {name}")
        cloudformation.create_stack(**arguments)  # type: ignore[arg-type]
        _wait(cloudformation, "stack_create_complete", name)
    else:
        try:
            cloudformation.update_stack(**arguments)  # type: ignore[arg-type]
        except ClientError as exc:
            if _NOTHING_TO_UPDATE not in exc.response["Error"].get("Message", ""):
                raise
            say(f"stack {name} is up to date")
            return stack_outputs(cloudformation, name)
        say(f"updating stack {name}")
        _wait(cloudformation, "stack_update_complete", name)
    say(f"stack {name} ready")
    return stack_outputs(cloudformation, name)


def delete_stack(cloudformation: CloudFormationClient, name: str, *, say: Say) -> None:
    if stack_status(cloudformation, name) is None:
        say(f"stack {name}: not there")
        return
    say(f"deleting stack {name}")
    cloudformation.delete_stack(StackName=name)
    _wait(cloudformation, "stack_delete_complete", name)
    say(f"stack {name} deleted")


def _wait(cloudformation: CloudFormationClient, waiter: str, name: str) -> None:
    try:
        cloudformation.get_waiter(waiter).wait(  # type: ignore[call-overload]
            StackName=name, WaiterConfig=WAITER_CONFIG
        )
    except WaiterError as exc:
        raise DeploymentError(
            f"stack {name}: {exc}; {_failure_reasons(cloudformation, name)}"
        ) from exc


def _failure_reasons(cloudformation: CloudFormationClient, name: str) -> str:
    try:
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
    except ClientError:
        return "no stack events"
    reasons = [
        f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
        for e in events
        if e.get("ResourceStatus", "").endswith("FAILED")
    ]
    return "; ".join(reasons[:5]) or "no failed resources reported"
