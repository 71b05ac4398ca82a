"""`iotdr testbed ...`: thin CLI over `Testbed`.

    iotdr testbed up [--dir DIR] [--cname-ttl N]
    iotdr testbed status [--dir DIR] [--json]
    iotdr testbed down [--dir DIR]
    iotdr testbed fault VERB ARGS... [--dir DIR]

`register` adds the `testbed` command to the `iotdr` parser; every leaf sets
`func`, which returns the exit code.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from iotdr.testbed.connect_limits import ConnectLimits
from iotdr.testbed.errors import TestbedError
from iotdr.testbed.state import DnsFailMode
from iotdr.testbed.testbed import Testbed

DEFAULT_DIR = Path("run/testbed")

_FaultAction = Callable[[Testbed, argparse.Namespace], None]


def _region_verb(method: Callable[[Testbed, str], None]) -> _FaultAction:
    return lambda testbed, args: method(testbed, args.region)


# verb -> (help, positional arguments, action)
_FAULTS: dict[str, tuple[str, list[str], _FaultAction]] = {
    "kill": (
        "SIGKILL a region (connections refused)",
        ["region"],
        _region_verb(Testbed.kill_region),
    ),
    "restore": ("start a killed region again", ["region"], _region_verb(Testbed.restore_region)),
    "blackhole": ("drop all packets to/from a region", ["region"], _region_verb(Testbed.blackhole)),
    "heal": ("end a region's blackhole", ["region"], _region_verb(Testbed.heal)),
    "cname": ("point the CNAME at HOST", ["host"], lambda tb, a: tb.set_cname(a.host, a.ttl)),
    "txt": ("set the TXT record's text", ["text"], lambda tb, a: tb.set_txt(a.text)),
    "dns-fail": ("break DNS", ["mode"], lambda tb, a: tb.dns_fail(a.mode)),
    "dns-heal": ("end the DNS failure", [], lambda tb, a: tb.dns_heal()),
    "jitr": (
        "emulate AWS IoT just-in-time registration on a region",
        ["region", "switch"],
        lambda tb, a: tb.set_jitr(a.region, a.switch == "on", a.delay),
    ),
    "tls-bad": (
        "restart a region with a rogue-CA certificate",
        ["region"],
        lambda tb, a: tb.set_tls_bad(a.region, True),
    ),
    "tls-good": (
        "restart a region with its real certificate",
        ["region"],
        lambda tb, a: tb.set_tls_bad(a.region, False),
    ),
    "auth-reject": (
        "restart a region answering CONNECT 'not authorized'",
        ["region"],
        lambda tb, a: tb.set_auth_reject(a.region, True),
    ),
    "auth-accept": (
        "restart a region accepting its clients again",
        ["region"],
        lambda tb, a: tb.set_auth_reject(a.region, False),
    ),
    "limits": (
        "restart a region with AWS IoT's CONNECT quotas (RATE per second, or off)",
        ["region", "rate"],
        lambda tb, a: tb.set_connect_limits(a.region, _limits(a.rate)),
    ),
}


def _limits(rate: str) -> ConnectLimits | None:
    """`off`, or the account-wide CONNECT rate (the client-id rule comes with it)."""
    if rate == "off":
        return None
    try:
        return ConnectLimits(account_connects_per_s=float(rate))
    except ValueError as exc:
        raise TestbedError(f"rate must be a number of CONNECTs per second or off: {exc}") from exc


_ARGUMENT_HELP = {
    "region": "primary|secondary or region-a|region-b",
    "host": "the new CNAME target",
    "text": "any text, garbage included",
    "switch": "on|off",
    "mode": "|".join(mode.value for mode in DnsFailMode),
    "rate": "CONNECTs per second for the whole account (AWS default 500), or off",
}
_ARGUMENT_CHOICES = {"switch": ["on", "off"], "mode": [mode.value for mode in DnsFailMode]}


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds `testbed` and its subcommands to the `iotdr` parser."""
    directory = argparse.ArgumentParser(add_help=False)
    directory.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"the testbed's directory (default: {DEFAULT_DIR})",
    )
    testbed = subparsers.add_parser(
        "testbed", help="a local two-region testbed: real brokers, real DNS, faults"
    )
    commands = testbed.add_subparsers(dest="testbed_command", required=True)

    up = commands.add_parser("up", parents=[directory], help="start a testbed")
    up.add_argument("--cname-ttl", type=int, default=5, help="TTL of the CNAME (default: 5)")
    up.add_argument(
        "--connect-quota",
        metavar="RATE",
        help="emulate AWS IoT's CONNECT quotas in both regions: RATE per second per "
        "account (AWS default 500) and 1 per second per client id",
    )
    up.set_defaults(func=_up)

    status = commands.add_parser("status", parents=[directory], help="what runs, which faults")
    status.add_argument("--json", action="store_true", help="print testbed.json instead")
    status.set_defaults(func=_status)

    down = commands.add_parser("down", parents=[directory], help="stop it and delete it")
    down.set_defaults(func=_down)

    fault = commands.add_parser("fault", help="inject or undo a fault")
    verbs = fault.add_subparsers(dest="verb", required=True)
    for verb, (help_text, arguments, action) in _FAULTS.items():
        parser = verbs.add_parser(verb, parents=[directory], help=help_text)
        for argument in arguments:
            parser.add_argument(
                argument, choices=_ARGUMENT_CHOICES.get(argument), help=_ARGUMENT_HELP[argument]
            )
        if verb == "cname":
            parser.add_argument("--ttl", type=int, help="new TTL (default: unchanged)")
        if verb == "jitr":
            parser.add_argument(
                "--delay", type=float, default=3.0, help="seconds until a new certificate works"
            )
        parser.set_defaults(func=_fault, fault_action=action)


def _reporting_errors(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except TestbedError as exc:
            print(f"iotdr testbed: {exc}", file=sys.stderr)
            return 1

    return run


@_reporting_errors
def _up(args: argparse.Namespace) -> int:
    limits = _limits(args.connect_quota) if args.connect_quota else None
    testbed = Testbed.up(args.dir, cname_ttl=args.cname_ttl, connect_limits=limits)
    info = testbed.info
    print(f"testbed up in {testbed.directory} (namespace {info.netns})")
    print(f"  contract:     {testbed.directory / 'testbed.json'}")
    print(f"  agent config: {info.agent_config}")
    print(f"  run inside:   ip netns exec {info.netns} <command>")
    return 0


@_reporting_errors
def _status(args: argparse.Namespace) -> int:
    testbed = Testbed.load(args.dir)
    status = testbed.status()
    if args.json:
        print(json.dumps(testbed.info.to_json(), indent=2))
    else:
        print(status.render())
    return 0 if status.healthy else 1


@_reporting_errors
def _down(args: argparse.Namespace) -> int:
    Testbed.load(args.dir).down()
    print(f"testbed in {args.dir} is down")
    return 0


@_reporting_errors
def _fault(args: argparse.Namespace) -> int:
    action: _FaultAction = args.fault_action
    action(Testbed.load(args.dir), args)
    return 0
