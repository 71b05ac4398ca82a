"""The Locust glue of a distributed fleet run (`locust -f` this file).

Master:  locust -f <this file> --master --headless --expect-workers N -u N -r N
             --iotdr-scenario FILE --iotdr-out DIR [--iotdr-testbed DIR] [--iotdr-devices N]
Worker:  locust -f <this file> --worker --master-host HOST [--iotdr-certificates DIR]
(`iotdr simulate run --engine locust` and `iotdr simulate worker` build these.)

Locust supplies the processes, the master/worker transport, `--expect-workers`,
heartbeats (a dead worker is noticed) and its live statistics; the fleet
does not use Locust users to make load. Each worker runs one idle user (so
Locust's own bookkeeping is happy) and its share of devices, which the
master assigns with a custom message; every device's record comes back the
same way (see locust_master, worker_fleet, wire). Connect outcomes are also
fired as Locust requests (type CONNECT, name = region), so Locust's web UI
and CSV show the storm live; the report never reads them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import gevent
import gevent.event
from locust import User, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

from iotdr.agent.core.errors import ConfigError
from iotdr.agent.core.failures import FailureKind
from iotdr.simulator import wire
from iotdr.simulator.aws_faults import (
    AwsFaultError,
    FailoverRecord,
    apply_worker_fault,
    check_timeline,
    cname_target,
    endpoint_hosts,
    endpoints_target,
)
from iotdr.simulator.locust_master import Conductor
from iotdr.simulator.real_run import testbed_target
from iotdr.simulator.run import certificates_dir
from iotdr.simulator.scenario import Fault, Scenario, load_scenario, parse_scenario
from iotdr.simulator.testbed_faults import apply_fault
from iotdr.simulator.worker_fleet import WorkerFleet
from iotdr.testbed.prerequisites import raise_open_files_limit
from iotdr.testbed.testbed import Testbed

log = logging.getLogger("iotdr.simulator")

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class FleetShard(User):
    """One idle user per worker: the devices are not Locust users."""

    wait_time = constant(3600)

    @task
    def idle(self) -> None:
        pass


def _options(parser: Any) -> None:
    group = parser.add_argument_group("iotdr fleet")
    group.add_argument("--iotdr-scenario", default="", help="scenario file (master)")
    group.add_argument("--iotdr-out", default="", help="report directory (master)")
    group.add_argument("--iotdr-testbed", default="", help="testbed directory (master)")
    group.add_argument("--iotdr-devices", type=int, default=0, help="fleet size override")
    group.add_argument(
        "--iotdr-certificates",
        default="",
        help="device certificates here (worker; default: the master's path)",
    )
    group.add_argument(
        "--iotdr-endpoints",
        default="",
        help="real endpoints: an agent.yaml with endpoints/dns (master)",
    )
    group.add_argument(
        "--iotdr-dns-stack", default="", help="the iotdr cloud DNS stack, for cname faults (master)"
    )
    group.add_argument("--iotdr-dns-region", default="", help="the DNS stack's region (master)")
    group.add_argument(
        "--iotdr-netns", default="", help="worker-side faults in this network namespace (worker)"
    )


def _init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    raise_open_files_limit()
    if isinstance(runner, MasterRunner):
        _Master(environment)
    elif isinstance(runner, WorkerRunner):
        _Worker(environment)


# Locust's Event.add_listener carries no annotations.
events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_init)  # type: ignore[no-untyped-call]


# -- the master -----------------------------------------------------------


class _Master:
    def __init__(self, environment: Any) -> None:
        self._environment = environment
        self._conductor: Conductor | None = None
        self._started = False
        environment.runner.register_message(wire.READY, self._forward("on_ready"))
        environment.runner.register_message(wire.RESULTS, self._forward("on_results"))
        environment.runner.register_message(wire.FAULT_DONE, self._forward("on_fault_done"))
        environment.events.test_start.add_listener(self._test_start)

    def _forward(self, name: str) -> Any:
        def handler(environment: Any, msg: Any, **_kw: Any) -> None:
            if self._conductor is not None:
                getattr(self._conductor, name)(environment, msg)

        return handler

    def _test_start(self, environment: Any, **_kw: Any) -> None:
        if not self._started:
            self._started = True
            gevent.spawn(self._run)

    def _run(self) -> None:
        environment = self._environment
        try:
            code = self._conduct()
        except ConfigError as exc:
            print(f"iotdr simulate: {exc}", file=sys.stderr)
            code = EXIT_ERROR
        except Exception:
            log.exception("the distributed run failed")
            code = EXIT_ERROR
        environment.process_exit_code = code
        environment.runner.quit()

    def _conduct(self) -> int:
        def progress(line: str) -> None:
            print(f"iotdr: {line}", file=sys.stderr, flush=True)

        options = self._environment.parsed_options
        path = Path(options.iotdr_scenario)
        scenario = load_scenario(path)
        if options.iotdr_devices:
            scenario = scenario.with_devices(options.iotdr_devices)
        out = Path(options.iotdr_out)
        if options.iotdr_testbed:
            testbed = Testbed.load(Path(options.iotdr_testbed))
            conductor = Conductor(
                runner=self._environment.runner,
                scenario=scenario,
                scenario_text=path.read_text(),
                target=testbed_target(testbed, certificates_dir(testbed)),
                out=out,
                apply_fault=lambda fault: apply_fault(testbed, fault),
                progress=progress,
            )
        elif options.iotdr_endpoints:
            conductor = self._real_aws(scenario, path, out, progress)
        else:
            raise ConfigError(str(path), "(run)", "give a testbed or real endpoints")
        self._conductor = conductor
        report = conductor.run()
        print(report.summary(), flush=True)
        return EXIT_PASS if report.passed else EXIT_FAIL

    def _real_aws(
        self, scenario: Scenario, path: Path, out: Path, progress: Callable[[str], None]
    ) -> Conductor:
        """Real endpoints: region faults by the workers, cname by Route 53."""
        options = self._environment.parsed_options
        if not options.iotdr_certificates:
            raise ConfigError(str(path), "(run)", "real endpoints need --iotdr-certificates")
        target = endpoints_target(Path(options.iotdr_endpoints), Path(options.iotdr_certificates))
        record = route53 = None
        if options.iotdr_dns_stack:
            region = options.iotdr_dns_region or None
            cloudformation = boto3.client("cloudformation", region_name=region)
            route53 = boto3.client("route53")
            record = FailoverRecord.from_stack(cloudformation, options.iotdr_dns_stack)
        check_timeline(scenario, has_dns_record=record is not None)
        hosts = endpoint_hosts(target)
        named = record.endpoints(route53) if record is not None and route53 is not None else {}

        def apply(fault: Fault) -> None:
            if fault.fault == "cname":
                assert record is not None and route53 is not None and fault.target
                record.point_at(route53, cname_target(fault.target, named), fault.ttl)
            else:
                assert fault.region is not None
                conductor.worker_fault(fault, [hosts[fault.region]])

        conductor = Conductor(
            runner=self._environment.runner,
            scenario=scenario,
            scenario_text=path.read_text(),
            target=target,
            out=out,
            apply_fault=apply,
            progress=progress,
        )
        return conductor


# -- a worker -------------------------------------------------------------


class _Worker:
    def __init__(self, environment: Any) -> None:
        self._environment = environment
        self._t0: gevent.event.AsyncResult[float] = gevent.event.AsyncResult()
        self._fleet: WorkerFleet | None = None
        # Locust copies the master's custom arguments over a worker's when
        # the test starts; these two are the worker's own, so keep them now.
        options = environment.parsed_options
        self._certificates = str(options.iotdr_certificates) if options else ""
        self._netns = str(options.iotdr_netns) if options else ""
        runner = environment.runner
        runner.register_message(wire.SHARD, self._on_shard)
        runner.register_message(wire.T0, lambda environment, msg, **_: self._t0.set(msg.data["t0"]))
        runner.register_message(wire.FAULT, self._on_fault, concurrent=True)
        environment.events.quitting.add_listener(self._quitting)

    def _on_shard(self, environment: Any, msg: Any, **_kw: Any) -> None:
        gevent.spawn(self._run, dict(msg.data))

    def _run(self, data: dict[str, Any]) -> None:
        scenario = parse_scenario(data["scenario"], data["source"])
        scenario = scenario.with_devices(int(data["devices"]))
        certificates = Path(self._certificates or data["certificates"])
        runner = self._environment.runner
        fleet = self._fleet = WorkerFleet(
            scenario,
            data["base_config"],
            certificates,
            (int(data["shard"][0]), int(data["shard"][1])),
            on_connect=self._connect_seen,
        )
        connected = fleet.ramp_up(float(data["ramp_start"]))
        runner.send_message(wire.READY, {"connected": connected, "devices": len(fleet.drivers)})
        t0 = self._t0.get()
        assert t0 is not None
        records = fleet.run(t0)
        runner.send_message(
            wire.RESULTS,
            {"records": [wire.record_to_wire(r) for r in records], "stats": fleet.stats()},
        )

    def _connect_seen(
        self, region: str, seconds: float, failure: tuple[FailureKind, str] | None
    ) -> None:
        self._environment.events.request.fire(
            request_type="CONNECT",
            name=region,
            response_time=seconds * 1000,
            response_length=0,
            exception=None
            if failure is None
            else ConnectionError(f"{failure[0].value}: {failure[1]}"),
            context={},
        )

    def _on_fault(self, environment: Any, msg: Any, **_kw: Any) -> None:
        error = None
        try:
            apply_worker_fault(self._netns or os.environ.get("IOTDR_NETNS", ""), msg.data)
        except AwsFaultError as exc:
            error = str(exc)
        reply = {"index": msg.data["index"], "error": error}
        self._environment.runner.send_message(wire.FAULT_DONE, reply)

    def _quitting(self, **_kw: Any) -> None:
        if self._fleet is not None:
            for driver in self._fleet.drivers:
                driver.stop()
