"""The run's plots (matplotlib, PNG): fleet per region, CONNECT rate, RTO CDF."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from iotdr.simulator.fleet_summary import CONNECTED_STEP_S, DeviceColumns, FleetSummary
from iotdr.simulator.results import RunFacts


def _mark_faults(axes: Axes, facts: RunFacts) -> None:
    for expectation in facts.faults[1:]:
        if expectation.fault is None:
            continue
        axes.axvline(expectation.since, color="tab:red", linestyle="--", linewidth=1)
        axes.annotate(
            expectation.fault.describe(),
            (expectation.since, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="tab:red",
        )


def plot_connected(path: Path, facts: RunFacts, summary: FleetSummary) -> None:
    start = summary.connected_from
    series = summary.connected
    times = [start + i * CONNECTED_STEP_S for i in range(len(next(iter(series.values()), [])))]
    figure, axes = plt.subplots(figsize=(9, 4))
    for region, counts in series.items():
        axes.step(times, counts, where="post", label=region)
    axes.axhline(len(summary.devices), color="grey", linewidth=0.8, linestyle=":")
    _mark_faults(axes, facts)
    axes.set_xlabel("seconds from t=0")
    axes.set_ylabel("devices connected")
    axes.set_title("Fleet connected per region")
    axes.legend(loc="center left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_connects(path: Path, facts: RunFacts, summary: FleetSummary) -> None:
    start = math.floor(summary.connected_from)
    attempts = summary.attempts.since(start)
    seconds = [start + i for i in range(len(attempts))]
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.bar(seconds, attempts, width=0.9, label="CONNECT attempts (devices)", color="tab:blue")
    refused: dict[int, int] = {}
    for counts in facts.region_seconds:
        refused[counts.second] = refused.get(counts.second, 0) + counts.refused
    if any(refused.values()):
        xs = sorted(s for s in refused if start <= s <= facts.duration_s)
        axes.bar(
            xs,
            [refused[s] for s in xs],
            width=0.5,
            color="tab:orange",
            label="refused by quota (regions)",
        )
    if facts.quota_per_s is not None:
        axes.axhline(facts.quota_per_s, color="tab:red", label=f"quota {facts.quota_per_s:g}/s")
    _mark_faults(axes, facts)
    axes.set_xlabel("seconds from t=0")
    axes.set_ylabel("per second")
    axes.set_title("CONNECT attempts per second against the account quota")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_rto_cdf(path: Path, devices: DeviceColumns) -> None:
    figure, axes = plt.subplots(figsize=(9, 4))
    disrupted = sum(devices.disrupted)
    for label, values in (
        ("first acknowledged publish (RTO)", devices.of_disrupted(devices.rto_s)),
        ("connected (CONNACK)", devices.of_disrupted(devices.connect_rto_s)),
    ):
        finite = sorted(v for v in values if v is not None)
        if finite:
            fractions = [(i + 1) / disrupted for i in range(len(finite))]
            axes.step(finite, fractions, where="post", label=label)
    axes.set_xlabel("seconds after the first fault")
    axes.set_ylabel("fraction of disrupted devices")
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Recovery of the {disrupted} devices the first fault disrupted")
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "no device was disrupted", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


PLOTS = ("connected.png", "connects.png", "rto_cdf.png")


def write_plots(directory: Path, facts: RunFacts, summary: FleetSummary) -> None:
    plot_connected(directory / PLOTS[0], facts, summary)
    plot_connects(directory / PLOTS[1], facts, summary)
    plot_rto_cdf(directory / PLOTS[2], summary.devices)
