"""Least privilege: each Lambda role allows exactly the AWS calls its code makes.

The test reads both sides: the IAM actions of each role in
templates/region.yaml, and the boto3 calls in the modules each role's
functions run (every `client.operation(...)` and `get_paginator("op")`,
found with `ast` and named by botocore's own service models). A call added
to the code without its action, or an action left in the template that no
code uses, fails it.
"""

from __future__ import annotations

import ast
from importlib import resources
from typing import Any

import botocore
import botocore.session
import pytest

from tests.cloud.template_reader import resources_of

# IAM prefix of each boto3 service the code uses (iot-data's actions are iot:...).
_PREFIX = {
    "iot": "iot",
    "iot-data": "iot",
    "dynamodb": "dynamodb",
    "sqs": "sqs",
    "secretsmanager": "secretsmanager",
    "cloudwatch": "cloudwatch",
}

# role -> (the modules its functions run, the services those modules call)
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "WorkerRole": (  # the worker, the retry runner and the reconciler
        ("worker", "registry_apply", "shadow_apply", "retry_runner", "reconcile", "records"),
        ("iot", "iot-data", "dynamodb", "sqs"),
    ),
    "ManagementEventRole": (("management", "records"), ("dynamodb",)),
    "JitrRole": (("jitr",), ("iot",)),
    "HealthRole": (("lambda_entry", "health"), ("secretsmanager", "cloudwatch")),
}

# Calls AWS makes with a function's role on its behalf, not the code: Lambda
# reads the stream for the event source mapping and writes failed batches to
# the on-failure destination (services-dynamodb-errors.html).
_ON_BEHALF = {
    "WorkerRole": {
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
        "dynamodb:ListStreams",
        "s3:PutObject",
        "s3:ListBucket",
    },
}


def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, from botocore's service model."""
    model = botocore.session.get_session().get_service_model(service)
    return {botocore.xform_name(name): name for name in model.operation_names}


def calls_in(modules: tuple[str, ...], services: tuple[str, ...]) -> set[str]:
    """IAM actions for the boto3 calls in `modules`, among `services`."""
    operations = {service: _operations(service) for service in services}
    actions: set[str] = set()
    for module in modules:
        source = resources.files("iotdr.cloud").joinpath(f"{module}.py").read_text()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                method = str(node.args[0].value)
            owners = [s for s in services if method in operations[s]]
            assert len(owners) <= 1, f"{module}: {method} is ambiguous between {owners}"
            if owners:
                actions.add(f"{_PREFIX[owners[0]]}:{operations[owners[0]][method]}")
    return actions


def granted(role: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            action = statement["Action"]
            actions.update([action] if isinstance(action, str) else action)
    return actions


@pytest.mark.parametrize("role_name", sorted(ROLES))
def test_each_role_allows_exactly_the_calls_its_code_makes(role_name: str) -> None:
    role = resources_of("region.yaml", "AWS::IAM::Role")[role_name]
    modules, services = ROLES[role_name]
    needed = calls_in(modules, services) | _ON_BEHALF.get(role_name, set())
    allowed = granted(role)
    assert not [a for a in allowed if "*" in a], f"{role_name}: wildcard actions"
    assert allowed == needed, (
        f"{role_name}: missing {sorted(needed - allowed)}, unused {sorted(allowed - needed)}"
    )


def test_every_lambda_role_is_checked() -> None:
    functions = resources_of("region.yaml", "AWS::Lambda::Function")
    roles = {f["Properties"]["Role"]["GetAtt"].split(".")[0] for f in functions.values()}
    assert roles == set(ROLES)
