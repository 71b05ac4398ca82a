"""`iotdr`: the testbed, the demo and tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

# Each command family needs an extra beyond a plain `pip install iotdr`
# (which is what a gateway has): without it, the command is still listed
# and says in one line what to install.
_EXTRAS = {
    "cloud": ("boto3", "botocore", "tenacity"),
    "testbed": ("cryptography", "dns"),
    "simulator": ("cryptography", "dns", "matplotlib", "rich"),
}


def _register_cloud(sub: SubParsers) -> None:
    from iotdr.cloud import commands  # noqa: PLC0415 (needs the cloud extra)

    commands.register(sub)


def _register_simulator(sub: SubParsers) -> None:
    from iotdr.simulator import commands  # noqa: PLC0415 (needs the simulator extra)

    commands.register(sub)


def _register_testbed(sub: SubParsers) -> None:
    from iotdr.testbed import commands  # noqa: PLC0415 (needs the testbed extra)

    commands.register(sub)
    demo = sub.add_parser(
        "demo", help="fail a local two-region testbed over and back, with timings"
    )
    demo.add_argument("--dir", help="working directory (default: a temporary one)")
    demo.add_argument("--keep", action="store_true", help="leave the testbed running")
    demo.set_defaults(func=_demo)


def _register_missing(sub: SubParsers, names: list[str], extra: str, module: str) -> None:
    def missing(_args: argparse.Namespace) -> int:
        print(
            f"iotdr {_args.command}: needs {module}: pip install 'iotdr[{extra}]'",
            file=sys.stderr,
        )
        return 2

    for name in names:
        parser = sub.add_parser(name, help=f"needs the {extra} extra: pip install 'iotdr[{extra}]'")
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.set_defaults(func=missing)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotdr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    families: list[tuple[str, list[str], Callable[[SubParsers], None]]] = [
        ("testbed", ["testbed", "demo"], _register_testbed),
        ("cloud", ["cloud"], _register_cloud),
        ("simulator", ["simulate"], _register_simulator),
    ]
    for extra, names, register in families:
        try:
            register(sub)
        except ModuleNotFoundError as exc:
            # `import dns.name` without dnspython names "dns" (or the submodule).
            module = (exc.name or "").partition(".")[0]
            if module not in _EXTRAS[extra]:
                raise
            _register_missing(sub, names, extra, module)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from iotdr.cli.demo import run_demo  # noqa: PLC0415 (needs the testbed extra)

    return run_demo(args.dir, keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run it again (--compiled)
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
