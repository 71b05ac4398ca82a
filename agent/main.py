"""`iotdr-agent`: run the daemon, check a configuration, show status."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from iotdr.agent.config_files import load_for
from iotdr.agent.control import query_status
from iotdr.agent.core.settings import ConfigError
from iotdr.agent.daemon import Daemon, EndpointFilter

LOG_FORMAT = "%(asctime)s %(levelname)s [%(region)s %(endpoint)s] %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotdr-agent", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the failover agent in the foreground"),
        ("check-config", "validate the layered configuration and print the merged result"),
        ("status", "ask the running agent for its status"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--config", type=Path, help="configuration file (the last layer)")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def _setup_logging(level: str) -> EndpointFilter:
    endpoint_filter = EndpointFilter()
    handler = logging.StreamHandler()
    handler.addFilter(endpoint_filter)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        loaded = load_for(args.config, args.root)
    except ConfigError as exc:
        print(f"iotdr-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(loaded.merged, indent=2, sort_keys=True))
        print(f"# valid; layers: {', '.join(str(f) for f in loaded.files)}", file=sys.stderr)
        return 0
    if args.command == "status":
        try:
            status = query_status(loaded.settings.control_socket)
        except OSError as exc:
            print(
                f"iotdr-agent: no agent answers on {loaded.settings.control_socket}: {exc}",
                file=sys.stderr,
            )
            return 3
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            _print_status(status)
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
