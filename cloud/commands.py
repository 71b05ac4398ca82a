"""`iotdr cloud ...`: thin CLI over the sync and compare tools.

    iotdr cloud sync region-to-region --primary-region R1 --secondary-region R2 [--workers N]
    iotdr cloud sync region-to-table  --primary-region R1 --table NAME
    iotdr cloud compare devices|shadows --primary-region R1 --secondary-region R2

`register` adds the `cloud` command to the `iotdr` parser; every leaf sets
`func`, which returns the exit code (0: done and equal, 1: errors or
differences found). `--endpoint-url` points every client at one endpoint
(moto's server, a VPC endpoint).
"""

from __future__ import annotations

import argparse
import sys

from iotdr.cloud.clients import RegionClients
from iotdr.cloud.compare import compare_devices, compare_shadows
from iotdr.cloud.registry_apply import CertificateMode
from iotdr.cloud.sync import region_to_region, region_to_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = subparsers.add_parser("cloud", help="replicate, sync and compare two AWS regions")
    verbs = cloud.add_subparsers(dest="cloud_command", required=True)

    sync = verbs.add_parser("sync", help="copy existing devices from the primary region")
    sync.add_argument("mode", choices=["region-to-region", "region-to-table"])
    _regions(sync)
    sync.add_argument("--workers", type=int, default=10, help="parallel threads (default 10)")
    sync.add_argument("--table", default="iotdr-replication", help="replication table name")
    sync.add_argument(
        "--certificates",
        choices=[m.value for m in CertificateMode],
        default=CertificateMode.COMPLETE.value,
        help="copy certificates and policies (complete) or leave them to JITR (jitr)",
    )
    sync.set_defaults(func=_sync)

    compare = verbs.add_parser("compare", help="list differences between the two regions")
    compare.add_argument("what", choices=["devices", "shadows"])
    _regions(compare)
    compare.add_argument("--workers", type=int, default=10)
    compare.set_defaults(func=_compare)


def _regions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--primary-region", required=True)
    parser.add_argument("--secondary-region", required=True)
    parser.add_argument("--prefix", default="", help="only things whose name starts with this")
    parser.add_argument("--endpoint-url", help="send every AWS call to this endpoint")


def _clients(args: argparse.Namespace) -> tuple[RegionClients, RegionClients]:
    return (
        RegionClients.create(args.primary_region, endpoint_url=args.endpoint_url),
        RegionClients.create(args.secondary_region, endpoint_url=args.endpoint_url),
    )


def _sync(args: argparse.Namespace) -> int:
    primary, secondary = _clients(args)
    if args.mode == "region-to-table":
        report = region_to_table(primary, table=args.table, prefix=args.prefix)
    else:
        report = region_to_region(
            primary,
            secondary,
            workers=args.workers,
            prefix=args.prefix,
            mode=CertificateMode(args.certificates),
        )
    for name, error in sorted(report.errors.items()):
        print(f"error: {name}: {error}", file=sys.stderr)
    print(f"synced {report.synced}, errors {len(report.errors)}, {report.elapsed_s:.1f} s")
    return 1 if report.errors else 0


def _compare(args: argparse.Namespace) -> int:
    primary, secondary = _clients(args)
    compare = compare_devices if args.what == "devices" else compare_shadows
    differences = compare(primary, secondary, prefix=args.prefix, workers=args.workers)
    for difference in differences:
        print(f"{difference.name}\t{difference.what}")
    print(f"{len(differences)} difference(s)", file=sys.stderr)
    return 1 if differences else 0
