"""The layers, checked from the source: the core is pure, and the simulator
reaches into the agent only through the core.

A pure core is what lets the daemon, every simulated device and the
virtual-time simulator run the same decisions; one stray `import time`
would make simulation results depend on the wall clock.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "agent" / "core"
SIMULATOR = ROOT / "simulator"

# The standard library the core may use: data, text and typing only.
CORE_ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "fnmatch",
    "functools",  # lru_cache: one shared value per argument, as fnmatch itself does
    "ipaddress",  # parses address text; no lookups
    "json",
    "math",
    "re",
    "typing",
    "iotdr",
}


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_there_is_a_core_and_a_simulator_to_check() -> None:
    assert len(_sources(CORE)) >= 8
    assert _sources(SIMULATOR)


@pytest.mark.parametrize("path", _sources(CORE), ids=lambda p: p.name)
def test_core_imports_nothing_that_does_io(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top in CORE_ALLOWED, f"{path.name} imports {name}"
        if top == "iotdr":
            assert name.startswith("iotdr.agent.core"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _sources(SIMULATOR), ids=lambda p: p.name)
def test_simulator_uses_only_the_agent_core(path: Path) -> None:
    for name in _imports(path):
        if name.startswith("iotdr.agent"):
            assert name.startswith("iotdr.agent.core"), f"{path.name} imports {name}"
