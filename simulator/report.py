"""Everything a run leaves in --out: report.json, devices.csv, plots, report.html."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from iotdr.simulator.plots import write_plots
from iotdr.simulator.report_files import write_csv, write_json
from iotdr.simulator.report_html import write_html
from iotdr.simulator.results import RunFacts, fleet_report, fleet_summary
from iotdr.simulator.scenario import Scenario


@dataclass(frozen=True, slots=True)
class WrittenReport:
    directory: Path
    report: dict[str, object]

    @property
    def passed(self) -> bool:
        return self.report["verdict"] == "pass"

    def summary(self) -> str:
        r = self.report
        rto = r["rto_s"]
        messages = r["messages"]
        assert isinstance(rto, dict) and isinstance(messages, dict)

        def s(value: object) -> str:
            return "never" if value is None else f"{float(str(value)):.2f}s"

        failed = r.get("failed_criteria") or []
        assert isinstance(failed, list)
        why = f" ({'; '.join(str(f) for f in failed)})" if failed else ""
        recovery = (
            f"RTO p50 {s(rto['p50'])} p95 {s(rto['p95'])} p99 {s(rto['p99'])} max {s(rto['max'])}"
            if rto["count"]
            else "no RTO (no device disrupted)"
        )
        return (
            f"{r['scenario']}: {str(r['verdict']).upper()}{why}\n"
            f"  {r['devices']} devices, {r['disrupted']} disrupted; {recovery}; "
            f"recovered {float(str(r['recovered'])):.1%}\n"
            f"  messages: {messages['published']} published, {messages['acknowledged']} acked, "
            f"{messages['lost']} lost, {messages['duplicated']} duplicated; "
            f"CONNECT peak {r['connect_attempts_peak_per_s']}/s, "
            f"throttled {r['throttled_connects']}, flaps {r['flaps']}\n"
            f"  report: {self.directory / 'report.html'}"
        )


def write_report(directory: Path, scenario: Scenario, facts: RunFacts) -> WrittenReport:
    directory.mkdir(parents=True, exist_ok=True)
    summary = fleet_summary(facts)
    facts = replace(facts, summary=summary)  # made once, for the report and the plots
    report, devices = fleet_report(facts, scenario.criteria, scenario.name)
    write_json(directory / "report.json", report)
    write_csv(directory / "devices.csv", devices)
    write_plots(directory, facts, summary)
    write_html(directory / "report.html", report, directory)
    return WrittenReport(directory=directory, report=report)
