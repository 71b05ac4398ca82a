"""Configuration files: layering, YAML parsing, provenance of each key.

Layers, later overriding earlier (mappings merge key by key, other values
are replaced whole):
  1. vendor defaults   /usr/lib/iotdr/agent.yaml
  2. the machine       /etc/iotdr/agent.yaml
  3. drop-ins          /etc/iotdr/agent.d/*.yaml, in name order
  4. --config FILE
Every key remembers the file that set it, so a validation error names the
file an operator must edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iotdr.agent.core.settings import ConfigError, Settings, parse_settings


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    settings: Settings
    merged: dict[str, Any]
    files: tuple[Path, ...]


def system_layers(root: Path = Path("/")) -> list[Path]:
    """The vendor, machine and drop-in files that exist under `root`."""
    layers = [root / "usr/lib/iotdr/agent.yaml", root / "etc/iotdr/agent.yaml"]
    drop_ins = sorted((root / "etc/iotdr/agent.d").glob("*.yaml"))
    return [p for p in [*layers, *drop_ins] if p.is_file()]


def read_layer(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), where, f"YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(top level)", "must be a mapping of settings")
    return data


def merge(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    origin: dict[str, str],
    source: str,
    prefix: str = "",
) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value, origin, source, f"{dotted}.")
        else:
            merged[key] = value
            origin[dotted] = source
            if isinstance(value, Mapping):
                _mark(value, origin, source, f"{dotted}.")
    return merged


def _mark(value: Mapping[str, Any], origin: dict[str, str], source: str, prefix: str) -> None:
    for key, sub in value.items():
        origin[f"{prefix}{key}"] = source
        if isinstance(sub, Mapping):
            _mark(sub, origin, source, f"{prefix}{key}.")


def load(paths: list[Path]) -> LoadedConfig:
    """Merge the layers in order and validate; raise ConfigError naming the
    file and key at fault."""
    if not paths:
        raise ConfigError("(none)", "(file)", "no configuration file found; pass --config FILE")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        merged = merge(merged, read_layer(path), origin, str(path))
    try:
        settings = parse_settings(merged, "merged configuration")
    except ConfigError as exc:
        source = _source_of(exc.key, origin) or " + ".join(str(p) for p in paths)
        raise ConfigError(source, exc.key, exc.problem) from None
    return LoadedConfig(settings=settings, merged=merged, files=tuple(paths))


def _source_of(key: str, origin: dict[str, str]) -> str | None:
    parts = key.split(".")
    while parts:
        found = origin.get(".".join(parts))
        if found:
            return found
        parts.pop()
    return None


def load_for(config: Path | None, root: Path = Path("/")) -> LoadedConfig:
    layers = system_layers(root)
    if config is not None:
        layers.append(config)
    return load(layers)
