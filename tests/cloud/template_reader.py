"""The CloudFormation templates as data, for tests that check them against the code."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (!Ref, !Sub, !GetAtt, ...) as {tag: value}."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


_Loader.add_multi_constructor("!", _tagged)


def load_template(name: str) -> dict[str, Any]:
    text = resources.files("iotdr.cloud").joinpath("templates", name).read_text()
    document: dict[str, Any] = yaml.load(text, Loader=_Loader)
    return document


def resources_of(name: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical: resource
        for logical, resource in load_template(name)["Resources"].items()
        if resource["Type"] == resource_type
    }
