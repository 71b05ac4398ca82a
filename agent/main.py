"""`iotdr-agent`: run the daemon, check a configuration, show status."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from iotdr.agent.config_files import LoadedConfig, load_for
from iotdr.agent.control import query_status
from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.settings import DEFAULT_CONTROL_SOCKET
from iotdr.agent.daemon import Daemon, EndpointFilter
from iotdr.agent.environment import check_environment
from iotdr.agent.file_modes import check_tls_files
from iotdr.agent.journal import JournalHandler, stderr_is_journal
from iotdr.agent.metrics import render, write_atomically

LOG_FORMAT = "%(asctime)s %(levelname)s [%(region)s %(endpoint)s] %(message)s"
# journald stamps time, priority and the region/endpoint fields itself.
JOURNAL_FORMAT = "%(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotdr-agent", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the failover agent in the foreground"),
        ("check-config", "validate the layered configuration and print the merged result"),
        ("status", "ask the running agent for its status"),
        ("reload", "validate the configuration, then ask the agent (--pid) to reload it"),
        ("metrics", "print (or --output) the agent's status as Prometheus text"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", type=Path, help="configuration file (the last layer)")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the status as JSON")
        if name == "reload":
            cmd.add_argument("--pid", type=int, required=True, help="the agent's process id")
        if name == "metrics":
            cmd.add_argument(
                "--output", type=Path, help="write here atomically (node_exporter's textfile)"
            )
    return parser


def _setup_logging(level: str) -> EndpointFilter:
    endpoint_filter = EndpointFilter()
    handler: logging.Handler
    if stderr_is_journal():
        handler = JournalHandler()
        handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(endpoint_filter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return endpoint_filter


def _print_status(status: dict[str, object]) -> None:
    for key in (
        "state",
        "endpoint",
        "region",
        "role",
        "connected",
        "preferred",
        "failovers",
        "failbacks",
        "last_failover_s",
        "last_dns",
        "last_error",
    ):
        print(f"{key:>16}: {status.get(key)}")


def _error(line: str) -> None:
    """One line on stderr; an error to journald when stderr is the journal."""
    print(f"<3>{line}" if stderr_is_journal() else line, file=sys.stderr)


def _reload(loaded: LoadedConfig, pid: int) -> int:
    """systemd's ExecReload: the agent would refuse a broken configuration
    anyway; checking it here first makes `systemctl reload` fail and say why."""
    try:
        check_tls_files(loaded.settings, ", ".join(str(f) for f in loaded.files))
    except ConfigError as exc:
        _error(f"iotdr-agent: configuration NOT changed: {exc}")
        return 2
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        _error(f"iotdr-agent: cannot signal process {pid}: {exc.strerror}")
        return 1
    return 0


def _control_socket(config: Path | None, root: Path) -> str:
    """The running agent's socket. With a broken configuration (an edit in
    progress, while the agent runs on its old one), the default socket, and
    one line saying so: status and metrics must still answer then."""
    try:
        return load_for(config, root).settings.control_socket
    except ConfigError as exc:
        fallback = str(root / DEFAULT_CONTROL_SOCKET.lstrip("/"))
        _error(f"iotdr-agent: configuration error: {exc}; asking the agent on {fallback}")
        return fallback


def _metrics(control_socket: str, output: Path | None) -> int:
    try:
        status: dict[str, object] | None = query_status(control_socket)
    except OSError:
        status = None  # written as iotdr_agent_up 0, for alerting
    text = render(status)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomically(output, text)
        except OSError as exc:
            _error(f"iotdr-agent: cannot write {output}: {exc.strerror}")
            return 1
    return 0


def _status(control_socket: str, *, as_json: bool) -> int:
    try:
        status = query_status(control_socket)
    except OSError as exc:
        print(f"iotdr-agent: no agent answers on {control_socket}: {exc}", file=sys.stderr)
        return 3
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # status and metrics only read the control socket (the metrics timer
    # runs sandboxed, without the keys).
    if args.command == "metrics":
        return _metrics(_control_socket(args.config, args.root), args.output)
    if args.command == "status":
        return _status(_control_socket(args.config, args.root), as_json=args.json)
    try:
        loaded = load_for(args.config, args.root)
        # `run`: the daemon makes its probes' SSL contexts when it needs them.
        check_environment(loaded, python_ssl=args.command != "run")
    except ConfigError as exc:
        what = "configuration NOT changed" if args.command == "reload" else "configuration error"
        _error(f"iotdr-agent: {what}: {exc}")
        return 2
    if args.command == "reload":
        return _reload(loaded, args.pid)
    if args.command == "check-config":
        # default=str: YAML values such as dates have no JSON form.
        print(json.dumps(loaded.merged, indent=2, sort_keys=True, default=str))
        print(f"# valid; layers: {', '.join(str(f) for f in loaded.files)}", file=sys.stderr)
        return 0
    endpoint_filter = _setup_logging(loaded.settings.log_level)
    daemon = Daemon(loaded, args.config, args.root, endpoint_filter)
    try:
        return asyncio.run(daemon.run())
    except ConfigError as exc:
        logging.getLogger("iotdr.agent").error("configuration error: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
