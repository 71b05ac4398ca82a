"""The testbed against its real processes: mosquitto, Knot, iptables, the JITR gate.

Each test gets its own testbed (its own namespace) from the `testbed` fixture.
Nothing here measures time: tests wait for events with generous deadlines.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import dns.resolver
import pytest
import yaml

from iotdr.testbed import (
    Observer,
    PrerequisiteError,
    Testbed,
    TestbedError,
    commands,
    netns,
    regions,
)
from iotdr.testbed import testbed as testbed_module
from iotdr.testbed.prerequisites import find_tools
from iotdr.testbed.processes import is_running, pids_in_netns
from tests.testbed.device import Attempt, Outcome, connect, resolve

pytestmark = pytest.mark.testbed

REGION_A_HOST = "a1b2c3d4e5f6g7-ats.iot.region-a.iotdr.test"
REGION_B_HOST = "a1b2c3d4e5f6g7-ats.iot.region-b.iotdr.test"
TOPIC = "iotdr/iotdr-device-1/heartbeat"
DEADLINE_S = 30.0  # generous: these wait for events, they measure nothing


def kdig(testbed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["kdig", "@127.0.0.1", "+timeout=1", "+retry=0", *args]
    return subprocess.run(testbed.netns_argv(argv), capture_output=True, text=True, check=False)


def kdig_short(testbed: Testbed, name: str, rdtype: str) -> list[str]:
    done = kdig(testbed, "+short", name, rdtype)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[:-1]


def kdig_status(testbed: Testbed, name: str, rdtype: str) -> str:
    done = kdig(testbed, name, rdtype)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split("status: ")[1].split(";")[0]


def zone_answers(testbed: Testbed) -> list[str]:
    """The CNAME and TXT answers (with TTLs) as Knot serves them."""
    lines = []
    for name, rdtype in (("iot.iotdr.test", "CNAME"), ("_iot.iotdr.test", "TXT")):
        done = kdig(testbed, "+noall", "+answer", name, rdtype)
        assert done.returncode == 0, done.stderr
        lines += done.stdout.splitlines()
    return lines


def retry_until(attempt: Callable[[], bool], *, deadline_s: float = DEADLINE_S) -> bool:
    """Retries a connection attempt, paced like a device would, until it succeeds."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if attempt():
            return True
        time.sleep(0.5)
    return False


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def publish_and_observe(attempt: Attempt, observer: Observer) -> None:
    payload = f"hello {time.monotonic()}".encode()
    attempt.publish(TOPIC, payload)
    assert observer.wait_for_message(topic=TOPIC, payload=payload, timeout=DEADLINE_S)


# -- the contract ----------------------------------------------------------------


def test_testbed_json_honours_the_contract(testbed: Testbed) -> None:
    directory = testbed.directory
    data = json.loads((directory / "testbed.json").read_text())
    assert set(data) == {
        "netns", "ca", "regions", "local", "dns", "device", "observer", "agent_config"
    }  # fmt: skip
    assert data["netns"].startswith("iotdr-tb-") and netns.exists(data["netns"])
    assert data["ca"] == {"cert": f"{directory}/pki/ca.pem", "key": f"{directory}/pki/ca.key"}
    for role, name, address in (
        ("primary", "region-a", "127.0.0.2"),
        ("secondary", "region-b", "127.0.0.3"),
    ):
        region = data["regions"][role]
        assert set(region) == {"name", "host", "address", "port", "pid"}
        assert region["name"] == name
        assert region["host"] == f"a1b2c3d4e5f6g7-ats.iot.{name}.iotdr.test"
        assert (region["address"], region["port"]) == (address, 8883)
        assert is_running(region["pid"]) and "mosquitto" in cmdline(region["pid"])
    assert data["local"]["host"] == "127.0.0.1" and data["local"]["port"] == 1883
    assert is_running(data["local"]["pid"])
    assert data["dns"] == {
        "server": "127.0.0.1",
        "port": 53,
        "zone": "iotdr.test",
        "cname": "iot.iotdr.test",
        "txt": "_iot.iotdr.test",
    }
    for identity, client_id in (("device", "iotdr-device-1"), ("observer", "iotdr-observer")):
        assert set(data[identity]) == {"client_id", "cert", "key"}
        assert data[identity]["client_id"] == client_id
        assert Path(data[identity]["cert"]).is_file() and Path(data[identity]["key"]).is_file()
    assert Path(data["ca"]["cert"]).is_file() and Path(data["ca"]["key"]).is_file()
    assert data["agent_config"] == f"{directory}/agent.yaml"
    assert testbed.info.to_json() == data


def test_agent_config_is_ready_for_this_testbed(testbed: Testbed) -> None:
    directory = testbed.directory
    config = yaml.safe_load((directory / "agent.yaml").read_text())
    assert config == {
        "client_id": "iotdr-device-1",
        "tls": {
            "ca_file": f"{directory}/pki/ca.pem",
            "cert_file": f"{directory}/pki/device.pem",
            "key_file": f"{directory}/pki/device.key",
        },
        "endpoints": {
            "primary": {"host": REGION_A_HOST, "port": 8883},
            "secondary": {"host": REGION_B_HOST, "port": 8883},
        },
        "dns": {"name": "iot.iotdr.test", "allowlist": ["*-ats.iot.*.iotdr.test"]},
        "heartbeat": {"topic": TOPIC, "interval_s": 1.0},
        "control_socket": f"{directory}/agent.sock",
        "state_dir": f"{directory}/state",
    }


# -- names and connections -------------------------------------------------------


def test_names_resolve_through_knot_inside_the_namespace(testbed: Testbed) -> None:
    assert kdig_short(testbed, REGION_A_HOST, "A") == ["127.0.0.2"]
    assert kdig_short(testbed, REGION_B_HOST, "A") == ["127.0.0.3"]
    assert kdig_short(testbed, "iot.iotdr.test", "CNAME") == [f"{REGION_A_HOST}."]
    assert kdig_short(testbed, "_iot.iotdr.test", "TXT") == [
        r'"{\"primary\": \"region-a\", \"secondary\": \"region-b\"}"'
    ]
    assert "iot.iotdr.test.\t5\tIN\tCNAME" in zone_answers(testbed)[0].replace(" ", "")
    # glibc, through the resolv.conf that `ip netns exec` mounts.
    getent = subprocess.run(
        testbed.netns_argv(["getent", "ahostsv4", "iot.iotdr.test"]),  # AI_ADDRCONFIG too
        capture_output=True,
        text=True,
        check=True,
    )
    assert getent.stdout.split()[0] == "127.0.0.2"
    # dnspython, from a thread moved into the namespace.
    resolver = dns.resolver.Resolver(filename=str(testbed.resolv_conf))
    with testbed.inside():
        txt = resolver.resolve("_iot.iotdr.test", "TXT")
        cname = resolver.resolve("iot.iotdr.test", "CNAME")
    assert b"".join(txt[0].strings) == b'{"primary": "region-a", "secondary": "region-b"}'
    assert str(cname[0].target) == f"{REGION_A_HOST}."
    assert resolve(testbed, REGION_B_HOST) == "127.0.0.3"


def test_device_messages_reach_an_observer_in_each_region(testbed: Testbed) -> None:
    info = testbed.info
    for region in ("primary", "secondary"):
        with Observer(info, region, ["iotdr/#"]) as observer:
            assert observer.wait_connected(DEADLINE_S)
            with connect(testbed, region) as attempt:
                assert attempt.outcome is Outcome.CONNECTED
                publish_and_observe(attempt, observer)


def test_device_connects_by_name_through_the_system_resolver(testbed: Testbed) -> None:
    info = testbed.info
    with Observer(info, "primary", [TOPIC]) as observer:
        assert observer.wait_connected(DEADLINE_S)
        script = Path(__file__).with_name("publish_by_name.py")
        argv = [
            sys.executable, str(script), REGION_A_HOST, "8883", str(info.ca.cert),
            str(info.device.cert), str(info.device.key), info.device.client_id, TOPIC, "by-name",
        ]  # fmt: skip
        done = subprocess.run(
            testbed.netns_argv(argv), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert observer.wait_for_message(topic=TOPIC, payload=b"by-name", timeout=DEADLINE_S)


# -- region faults -----------------------------------------------------------------


def test_kill_refuses_connections_and_restore_brings_the_region_back(testbed: Testbed) -> None:
    killed_pid = testbed.info.primary.pid
    with Observer(testbed.info, "primary", [TOPIC]) as observer:
        assert observer.wait_connected(DEADLINE_S)
        testbed.kill_region("region-a")
        assert not is_running(killed_pid)
        assert testbed.info.primary.pid == 0
        with connect(testbed, "primary") as attempt:
            assert attempt.outcome is Outcome.REFUSED
        assert observer.wait_disconnected(DEADLINE_S)
        with connect(testbed, "secondary") as attempt:
            assert attempt.outcome is Outcome.CONNECTED

        testbed.restore_region("primary")
        assert is_running(testbed.info.primary.pid)
        # The observer reconnects by itself.
        assert observer.wait_connected(DEADLINE_S, connections=2)
        with connect(testbed, "primary") as attempt:
            assert attempt.outcome is Outcome.CONNECTED
            publish_and_observe(attempt, observer)


def test_blackhole_times_out_and_heal_removes_exactly_its_rules(testbed: Testbed) -> None:
    def rules() -> str:
        argv = testbed.netns_argv(["iptables", "-S"])
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    before = rules()
    testbed.blackhole("primary")
    assert "127.0.0.2" in rules()
    with connect(testbed, "primary", timeout=2.0) as attempt:
        assert attempt.outcome is Outcome.TIMED_OUT
    with connect(testbed, "secondary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED

    testbed.heal("primary")
    assert rules() == before
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED


def test_blackhole_hangs_an_established_connection(testbed: Testbed) -> None:
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED and attempt.client is not None
        attempt.publish(TOPIC, b"acknowledged")
        testbed.blackhole("primary")
        message = attempt.client.publish(TOPIC, b"vanishes", qos=1)
        message.wait_for_publish(timeout=2.0)
        assert not message.is_published()  # no PUBACK, and no error either: it hangs


def test_jitr_hangs_up_on_a_new_certificate_then_accepts_it(testbed: Testbed) -> None:
    testbed.set_jitr("primary", True, delay_s=2.0)
    gate_pid = testbed.info.primary.pid
    assert "iotdr.testbed.jitr_gate" in cmdline(gate_pid)

    # TLS completes (connect() returned), then the gate hangs up: no CONNACK.
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CLOSED_WITHOUT_CONNACK

    outcomes: list[Outcome] = []

    def attempt_connect() -> bool:
        with connect(testbed, "primary") as attempt:
            outcomes.append(attempt.outcome)
            return attempt.outcome is Outcome.CONNECTED

    assert retry_until(attempt_connect), outcomes
    assert set(outcomes) <= {Outcome.CLOSED_WITHOUT_CONNACK, Outcome.CONNECTED}

    # Messages flow through the gate once the observer is registered too.
    with Observer(testbed.info, "primary", [TOPIC]) as observer:
        assert observer.wait_connected(DEADLINE_S)
        with connect(testbed, "primary") as attempt:
            assert attempt.outcome is Outcome.CONNECTED
            publish_and_observe(attempt, observer)

    # kill stops the gate and the broker; restore remembers registrations.
    broker_pid = testbed.state.regions["primary"].broker_pid
    testbed.kill_region("primary")
    assert not is_running(gate_pid) and not is_running(broker_pid)
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.REFUSED
    testbed.restore_region("primary")
    assert "iotdr.testbed.jitr_gate" in cmdline(testbed.info.primary.pid)
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED

    testbed.set_jitr("primary", False)
    assert "mosquitto" in cmdline(testbed.info.primary.pid)
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED


def test_tls_bad_fails_verification_and_tls_good_restores(testbed: Testbed) -> None:
    testbed.set_tls_bad("secondary", True)
    with connect(testbed, "secondary") as attempt:
        assert attempt.outcome is Outcome.TLS_REJECTED
    testbed.set_tls_bad("secondary", False)
    with connect(testbed, "secondary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED


def test_auth_reject_answers_not_authorized_and_auth_accept_restores(testbed: Testbed) -> None:
    testbed.set_auth_reject("primary", True)
    with connect(testbed, "primary") as attempt:
        assert (attempt.outcome, attempt.reason) == (Outcome.CONNACK_FAILURE, "Not authorized")
    testbed.set_auth_reject("primary", False)
    with connect(testbed, "primary") as attempt:
        assert attempt.outcome is Outcome.CONNECTED


# -- DNS faults ------------------------------------------------------------------


def test_cname_and_txt_changes_are_served(testbed: Testbed) -> None:
    testbed.set_cname(REGION_B_HOST, ttl=9)
    assert kdig_short(testbed, "iot.iotdr.test", "CNAME") == [f"{REGION_B_HOST}."]
    assert "\t9\tIN\tCNAME" in zone_answers(testbed)[0]
    assert kdig_short(testbed, "iot.iotdr.test", "A")[-1] == "127.0.0.3"

    garbage = 'not json {"primary": \\ "ü' + "x" * 300  # longer than one TXT string
    testbed.set_txt(garbage)
    resolver = dns.resolver.Resolver(filename=str(testbed.resolv_conf))
    with testbed.inside():
        answer = resolver.resolve("_iot.iotdr.test", "TXT")
    assert b"".join(answer[0].strings).decode() == garbage


def _assert_dns_broken(testbed: Testbed, mode: str) -> None:
    if mode == "timeout":
        for transport in ("+notcp", "+tcp"):
            done = kdig(testbed, transport, "iot.iotdr.test", "CNAME")
            assert done.returncode != 0 and "timeout" in done.stdout + done.stderr
    elif mode in ("servfail", "nxdomain"):
        for name, rdtype in (("iot.iotdr.test", "CNAME"), ("_iot.iotdr.test", "TXT")):
            assert kdig_status(testbed, name, rdtype) == mode.upper()
    else:  # refused: nothing listens on port 53 any more
        done = kdig(testbed, "+tcp", "iot.iotdr.test", "CNAME")
        assert done.returncode != 0 and "can't connect" in done.stdout + done.stderr
        with testbed.inside(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.connect(("127.0.0.1", 53))
            udp.send(b"\0" * 12)
            with pytest.raises(ConnectionRefusedError):
                udp.recv(512)


@pytest.mark.parametrize("mode", ["timeout", "servfail", "nxdomain", "refused"])
def test_dns_fail_and_heal_restores_the_exact_records(testbed: Testbed, mode: str) -> None:
    testbed.set_cname(REGION_B_HOST, ttl=7)
    testbed.set_txt("before the failure")
    before = zone_answers(testbed)

    testbed.dns_fail(mode)
    _assert_dns_broken(testbed, mode)
    assert testbed.status().healthy  # a stopped Knot is the fault, not a crash

    testbed.dns_heal()
    assert zone_answers(testbed) == before
    assert kdig_status(testbed, REGION_A_HOST, "A") == "NOERROR"


def test_records_changed_during_a_dns_failure_are_served_after_heal(testbed: Testbed) -> None:
    testbed.dns_fail("nxdomain")
    testbed.set_cname(REGION_B_HOST)
    assert kdig_status(testbed, "iot.iotdr.test", "CNAME") == "NXDOMAIN"
    testbed.dns_heal()
    assert kdig_short(testbed, "iot.iotdr.test", "CNAME") == [f"{REGION_B_HOST}."]


# -- CLI, side by side, down -----------------------------------------------------


def iotdr(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="iotdr")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_cli_faults_and_status(testbed: Testbed, capsys: pytest.CaptureFixture[str]) -> None:
    def testbed_cli(*argv: str) -> int:
        return iotdr("testbed", *argv, "--dir", str(testbed.directory))

    assert testbed_cli("status") == 0
    assert testbed_cli("fault", "kill", "primary") == 0
    assert testbed_cli("fault", "cname", REGION_B_HOST, "--ttl", "3") == 0
    assert testbed_cli("fault", "jitr", "secondary", "on", "--delay", "1") == 0
    assert testbed_cli("status") == 0  # faults are not failures
    report = capsys.readouterr().out
    assert "killed" in report and "jitr(delay=1s)" in report and REGION_B_HOST in report

    os.kill(testbed.info.local.pid, signal.SIGKILL)  # a crash is a failure
    assert testbed_cli("status") == 1
    assert "DEAD" in capsys.readouterr().out

    assert testbed_cli("up") == 1  # already up
    assert "already up" in capsys.readouterr().err
    assert testbed_cli("fault", "kill", "region-c") == 1


def test_testbeds_side_by_side_and_down_removes_everything(
    testbed: Testbed, tmp_path: Path
) -> None:
    second_dir = tmp_path / "second"
    assert iotdr("testbed", "up", "--dir", str(second_dir)) == 0
    second = Testbed.load(second_dir)
    sleeper = second.spawn(["sleep", "600"], second_dir / "logs" / "sleeper.log")
    try:
        assert second.netns != testbed.netns
        # Same addresses and ports, different namespaces: both serve.
        for bed in (testbed, second):
            with connect(bed, "primary") as attempt:
                assert attempt.outcome is Outcome.CONNECTED
        inode = second.state.netns_inode
        pids = [second.info.primary.pid, second.info.secondary.pid, second.info.local.pid]
        pids += [second.state.knot_pid, sleeper.pid]
        assert set(pids) <= set(pids_in_netns(inode))

        assert iotdr("testbed", "down", "--dir", str(second_dir)) == 0
        assert sleeper.wait(timeout=DEADLINE_S) == -signal.SIGTERM
        assert not netns.exists(second.netns)
        assert not netns.resolv_conf(second.netns).parent.exists()
        assert pids_in_netns(inode) == []
        assert not any(is_running(pid) for pid in pids)
        assert iotdr("testbed", "status", "--dir", str(second_dir)) == 1
        assert iotdr("testbed", "down", "--dir", str(second_dir)) == 0  # idempotent

        with connect(testbed, "primary") as attempt:  # the first one is untouched
            assert attempt.outcome is Outcome.CONNECTED
        with pytest.raises(TestbedError, match="is down"):
            second.kill_region("primary")
    finally:
        second.down()
        sleeper.kill()
        sleeper.wait()


def test_a_failed_up_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    free_name = testbed_module._free_netns_name

    def recorded_free_name() -> str:
        names.append(free_name())
        return names[-1]

    monkeypatch.setattr(testbed_module, "_free_netns_name", recorded_free_name)

    def broken_region(*args: object) -> None:
        raise TestbedError("region would not start")

    monkeypatch.setattr(regions, "start_region", broken_region)
    with pytest.raises(TestbedError, match="region would not start"):
        Testbed.up(tmp_path / "broken")
    assert not netns.exists(names[0])
    assert not netns.resolv_conf(names[0]).parent.exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "broken")], capture_output=True, check=False
    )
    assert leftovers.stdout == b""  # Knot and the local broker were started, then stopped


def test_missing_root_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteError, match="needs root"):
        find_tools()
