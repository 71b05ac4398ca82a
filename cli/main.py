"""`iotdr`: the testbed, the demo and tools."""

from __future__ import annotations

import argparse
import os
import sys

from iotdr.cli.demo import run_demo
from iotdr.cloud import commands as cloud_commands
from iotdr.simulator import commands as simulate_commands
from iotdr.testbed import commands as testbed_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotdr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    testbed_commands.register(sub)
    cloud_commands.register(sub)
    simulate_commands.register(sub)
    demo = sub.add_parser(
        "demo", help="fail a local two-region testbed over and back, with timings"
    )
    demo.add_argument("--dir", help="working directory (default: a temporary one)")
    demo.add_argument("--keep", action="store_true", help="leave the testbed running")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.dir, keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
