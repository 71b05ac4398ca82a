"""The agent's core and the virtual-time engine, compiled with mypyc.

Virtual time is bound by the cores: a million devices through a failover
and failback are 51 million `Machine.handle` calls. mypyc compiles the
same, typed source to C; nothing is rewritten or copied by hand.

`build()` copies the installed `iotdr` package's source into a cache
folder keyed by a hash of every copied file, the Python version and
mypyc's version, and compiles there the core (`agent/core`, except
`errors.py`: mypyc's native classes cannot subclass ValueError) and the
engine's modules (`COMPILED_SIMULATOR`). A changed source file is a new
key, so a compiled build can never be older than the source it claims to
be.
`rerun_compiled()` starts the same command again with that folder first on
`PYTHONPATH`, so every `iotdr` module comes from it and the compiled
modules shadow their source. `is_compiled()` tells which one is running,
and the report says so (`simulator.compiled`).

Needs a C compiler, Python's headers (Debian: `python3-dev`) and mypy
(which ships mypyc): the `compiled` extra. `tests/simulator/
test_compiled_build.py` shows a compiled and a plain run write the same
report and the same per-device CSV.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from iotdr.agent.core import machine
from iotdr.simulator import virtual_fleet

# The iotdr namespace's folders, copied whole so every import comes from
# one place; and the modules compiled in them.
PACKAGES = ("agent", "simulator", "testbed", "cli", "cloud")
COMPILED_SIMULATOR = (
    "device.py",
    "device_summary.py",
    "draws.py",
    "fleet_summary.py",
    "results.py",
    "virtual_clock.py",
    "virtual_device.py",
    "virtual_fleet.py",
    "virtual_rng.py",
    "virtual_telemetry.py",
    "virtual_world.py",
)
_NOT_COMPILED = frozenset({"errors.py"})
_IGNORE = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
ENV_MARK = "IOTDR_COMPILED_BUILD"  # set in the rerun: its folder


class BuildError(RuntimeError):
    """The compiled build could not be made (one line says why)."""


def is_compiled() -> bool:
    """True if the core running in this process is the compiled one."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return all(str(m.__file__).endswith(suffixes) for m in (machine, virtual_fleet))


def package_folders() -> dict[str, Path]:
    """Where each part of the iotdr namespace is installed (without
    importing it: the cloud part would import boto3)."""
    folders: dict[str, Path] = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(f"iotdr.{name}")
        if spec is None or not spec.submodule_search_locations:
            raise BuildError(f"iotdr.{name} is not installed")
        folders[name] = Path(next(iter(spec.submodule_search_locations)))
    return folders


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".so", ".pyc")
    )


def source_key(folders: dict[str, Path]) -> str:
    """A hash of everything that decides what the build holds."""
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(_mypy_version().encode())
    for name, folder in sorted(folders.items()):
        for path in _files(folder):
            digest.update(f"{name}/{path.relative_to(folder)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _mypy_version() -> str:
    try:
        return importlib.metadata.version("mypy")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iotdr" / "compiled"


def _check_tools() -> None:
    if _mypy_version() == "none":
        raise BuildError("needs mypy, which ships mypyc: pip install 'iotdr[compiled]'")
    if not Path(sysconfig.get_paths()["include"], "Python.h").is_file():
        raise BuildError("needs Python's C headers (Debian: apt-get install python3-dev)")
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        raise BuildError("needs a C compiler (Debian: apt-get install gcc)")


def build(cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The compiled build for the installed source: from the cache, or
    made now (about half a minute). Returns the folder to put on
    PYTHONPATH."""
    folders = package_folders()
    key = source_key(folders)
    root = (cache or default_cache()).resolve()
    target = root / key
    if (target / "BUILT").is_file():
        return target
    _check_tools()
    scratch = root / f"{key}.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    for name, folder in folders.items():
        shutil.copytree(folder, scratch / "iotdr" / name, ignore=_IGNORE)
    core = sorted(
        f"iotdr/agent/core/{p.name}"
        for p in (scratch / "iotdr/agent/core").glob("*.py")
        if p.name not in _NOT_COMPILED
    )
    modules = [*core, *(f"iotdr/simulator/{name}" for name in COMPILED_SIMULATOR)]
    log(f"compiling {len(modules)} modules with mypyc into {target} ...")
    command = [
        sys.executable, "-m", "mypyc",
        "--explicit-package-bases", "--namespace-packages",
        "--ignore-missing-imports", "--follow-imports=silent",
        *modules,
    ]  # fmt: skip
    env = {**os.environ, "MYPYPATH": str(scratch)}
    done = subprocess.run(
        command, cwd=scratch, env=env, capture_output=True, text=True, check=False
    )
    (scratch / "build.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise BuildError(f"mypyc failed ({scratch / 'build.log'}): {last}")
    shutil.rmtree(scratch / "build", ignore_errors=True)  # C sources and objects
    (scratch / "BUILT").write_text(key + "\n")
    try:
        scratch.rename(target)
    except OSError:  # another process built the same key meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def compiled_environment(folder: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(folder) + (os.pathsep + path if path else ""),
        ENV_MARK: str(folder),
    }


def add_compiled_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="run the core and the engine compiled with mypyc (same source; several "
        "times faster; the first run builds it, see simulator/compiled_build.py)",
    )


def switch_to_compiled(args: argparse.Namespace, command: str) -> str | None:
    """For `--compiled`: replaces this process by the same `iotdr` command on
    the compiled build, unless it already is; returns the one-line error if
    the build cannot be made."""
    if not getattr(args, "compiled", False) or is_compiled():
        return None
    try:
        rerun_compiled(["-m", "iotdr.cli.main", *args.argv])
    except BuildError as exc:
        return f"{command}: --compiled: {exc}"


def rerun_compiled(argv: list[str], cache: Path | None = None) -> NoReturn:
    """Replaces this process by `python ARGV...` on the compiled build.

    Raises BuildError if the build cannot be made, or if this process
    already is such a rerun and still runs the plain source."""
    if os.environ.get(ENV_MARK):
        raise BuildError(f"{os.environ[ENV_MARK]} is on PYTHONPATH but its modules did not load")
    folder = build(cache, log=lambda line: print(line, file=sys.stderr))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], compiled_environment(folder))
