"""report.json and devices.csv: the run for machines and spreadsheets."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from iotdr.simulator.device_summary import DeviceSummary


def write_json(path: Path, report: Mapping[str, object]) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, devices: Sequence[DeviceSummary]) -> None:
    names = [f.name for f in fields(DeviceSummary)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for device in devices:
            row = asdict(device)
            for key, value in row.items():
                if isinstance(value, float):
                    row[key] = f"{value:.4f}"
            writer.writerow(row)
