"""report.html: one self-contained page (plots inlined) a person can read offline."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path

from iotdr.simulator.plots import PLOTS

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222; }
h1 { margin-bottom: 0.2em; } .pass { color: #1a7f37; } .fail { color: #cf222e; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _seconds(value: object) -> str:
    return "never" if value is None else f"{float(str(value)):.2f} s"


def _row(name: str, value: object) -> str:
    return f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>"


def render(report: Mapping[str, object], plots_dir: Path) -> str:
    verdict = str(report["verdict"])
    rto = report["rto_s"]
    connect = report["connect_rto_s"]
    to_fraction = report["time_to_recovered_s"]
    messages = report["messages"]
    assert isinstance(rto, dict) and isinstance(connect, dict)
    assert isinstance(to_fraction, dict) and isinstance(messages, dict)
    rows = [
        _row("devices", report["devices"]),
        _row("disrupted by the first fault", report["disrupted"]),
        _row("recovered at the end", f"{float(str(report['recovered'])):.1%}"),
        _row("connect attempts, peak per second", report["connect_attempts_peak_per_s"]),
        _row("account CONNECT quota per second", report.get("quota_per_s") or "none"),
        _row("CONNECTs refused by the quota", report.get("throttled_connects", "n/a")),
        _row("flaps", report["flaps"]),
        _row("failbacks", report["failbacks"]),
    ]
    rto_rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(f"<td>{_seconds(s.get(k))}</td>" for k in ("p50", "p95", "p99", "max"))
        + "</tr>"
        for label, s in (("first acknowledged publish (RTO)", rto), ("connected", connect))
    )
    fraction_row = "".join(f"<td>{_seconds(v)}</td>" for v in to_fraction.values())
    message_rows = "".join(_row(k, v) for k, v in messages.items())
    faults = report.get("faults") or []
    assert isinstance(faults, list)
    fault_rows = "".join(
        f"<tr><td>{html.escape(str(f['fault']))}</td><td>{f['at_s']:.2f} s</td>"
        f"<td>{html.escape(str(f['right_region']))}</td></tr>"
        for f in faults
    )
    failed = report.get("failed_criteria") or []
    assert isinstance(failed, list)
    failed_html = "".join(f"<li>{html.escape(str(f))}</li>" for f in failed)
    images = "".join(
        f'<img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode((plots_dir / name).read_bytes()).decode()}">'
        for name in PLOTS
        if (plots_dir / name).exists()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>iotdr simulation: {html.escape(str(report["scenario"]))}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(str(report["scenario"]))}: <span class="{verdict}">{verdict.upper()}</span></h1>
<p>{html.escape(str(report["mode"]))} run, {report["devices"]} devices,
{report["duration_s"]} s after t=0.</p>
{f'<ul class="fail">{failed_html}</ul>' if failed_html else ""}
<h2>Recovery after the first fault</h2>
<table><tr><th></th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>{rto_rows}</table>
<table><tr><th>time until recovered</th>{"".join(f"<th>{k}</th>" for k in to_fraction)}</tr>
<tr><td>of the disrupted devices</td>{fraction_row}</tr></table>
<h2>Fleet</h2><table>{"".join(rows)}</table>
<h2>Messages</h2><table>{message_rows}</table>
<h2>Faults</h2><table><tr><th>fault</th><th>in effect at</th><th>right region after</th></tr>
{fault_rows}</table>
<h2>Plots</h2>{images}
<h2>report.json</h2><pre>{html.escape(json.dumps(report, indent=2))}</pre>
</body></html>
"""


def write_html(path: Path, report: Mapping[str, object], plots_dir: Path) -> None:
    path.write_text(render(report, plots_dir))
