"""Configuration files: layering, YAML parsing, provenance of each key.

Layers, later overriding earlier (mappings merge key by key, other values
are replaced whole):
  1. vendor defaults   /usr/lib/iotdr/agent.yaml
  2. the machine       /etc/iotdr/agent.yaml
  3. drop-ins          /etc/iotdr/agent.d/*.yaml, in name order
  4. --config FILE
Every key remembers the file that set it, so a validation error names the
file an operator must edit.

A file is hostile input until parsed: only a regular file is read (a FIFO
or a device could block or never end), at most `MAX_FILE_BYTES` of it, as
strict UTF-8, and its YAML is bounded in nesting and in size after aliases
are expanded (a "billion laughs" document is a few hundred bytes).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import Settings, parse_settings

# Real configurations are a few KiB; these bounds only stop hostile input.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000  # YAML nodes after expanding aliases


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    settings: Settings
    merged: dict[str, Any]
    files: tuple[Path, ...]
    origin: dict[str, str] = field(default_factory=dict)  # dotted key -> file that set it

    def source_of(self, key: str) -> str:
        """The file to edit for `key` (the last layer that set it)."""
        return _source_of(key, self.origin) or " + ".join(str(p) for p in self.files)


def system_layers(root: Path = Path("/")) -> list[Path]:
    """The vendor, machine and drop-in files that exist under `root`."""
    layers = [root / "usr/lib/iotdr/agent.yaml", root / "etc/iotdr/agent.yaml"]
    drop_ins = sorted((root / "etc/iotdr/agent.d").glob("*.yaml"))
    return [p for p in [*layers, *drop_ins] if p.is_file()]


class _TooLargeError(yaml.YAMLError):
    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing (PyYAML's
    composer recurses) and documents that expand to too many nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooLargeError(f"nested deeper than {MAX_DEPTH} levels", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, counted without
    expanding (an alias is the very node object its anchor names)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done or not children:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(c), 0) for c in children))
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _parse_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise _TooLargeError(
                f"expands to more than {MAX_NODES} values (aliases?)", node.start_mark
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_bounded(path: Path) -> bytes:
    """The file's bytes; only a regular file, and only so much of it."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigError(str(path), "(file)", f"cannot read: {kind}")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(str(path), "(file)", f"larger than {MAX_FILE_BYTES} bytes")
    return data


def read_layer(path: Path) -> dict[str, Any]:
    try:
        raw = _read_bounded(path)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), "(file)", f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        data = _parse_yaml(text)
    except _TooLargeError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), where, f"refused: {exc.problem}") from None
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
    return LoadedConfig(settings=settings, merged=merged, files=tuple(paths), origin=origin)


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
