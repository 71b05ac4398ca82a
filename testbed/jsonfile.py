"""Atomic JSON files: readers (other processes) never see half a file."""

import json
import os
from pathlib import Path
from typing import Any

from iotdr.testbed.errors import TestbedError


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TestbedError(f"{path} not found: no testbed there (run `iotdr testbed up`)") from exc
    except (OSError, ValueError) as exc:
        raise TestbedError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TestbedError(f"{path} does not hold a JSON object")
    return data
