"""Hostile and broken configurations (issue 12, items 3, 4 and 7): each
gives one line naming the file and the key, never a traceback, a hang or
unbounded memory; and `check-config` refuses what `run` could not use."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotdr.agent.config_files import MAX_FILE_BYTES, load
from iotdr.agent.core.errors import ConfigError
from iotdr.agent.main import main
from iotdr.testbed.layout import Layout
from iotdr.testbed.pki import create_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = Layout.at(tmp_path_factory.mktemp("pki"))
    create_pki(layout)
    return layout.pki


def base(pki: Path) -> str:
    return (
        "client_id: dev-1\n"
        f"tls: {{ca_file: {pki}/ca.pem, cert_file: {pki}/device.pem, "
        f"key_file: {pki}/device.key}}\n"
        "endpoints:\n"
        "  primary: {host: abc-ats.iot.us-east-1.amazonaws.com}\n"
    )


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--root", str(path.parent), "check-config", "--config", str(path)])
    err = capsys.readouterr().err
    return code, err


def one_clear_line(err: str, path: Path, key: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and key in lines[0], err
    assert "Traceback" not in err


# ------------------------------------------------------------ item 4


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("connection: {ack_timeout_s: .nan}\n", "connection.ack_timeout_s"),
        ("connection: {connect_spread_s: .inf}\n", "connection.connect_spread_s"),
        ("failback: {stability_window_s: -.inf}\n", "failback.stability_window_s"),
        ("backoff: {max_s: 1.0e+300}\n", "backoff.max_s"),
        ("heartbeat: {interval_s: .nan}\n", "heartbeat.interval_s"),
        ("dns: {max_ttl_s: .inf}\n", "dns.max_ttl_s"),
        ("jitr: {retry_delays_s: [1, .nan]}\n", "jitr.retry_delays_s"),
        (
            "connection: {attempt_timeout_s: 100000000000000000000000000000000000000000000}\n",
            "connection.attempt_timeout_s",
        ),
    ],
)
def test_every_number_is_finite_and_bounded(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki) + extra)
    code, err = check_config(path, capsys)
    assert code == 2
    one_clear_line(err, path, key)


@pytest.mark.parametrize(
    "client_id",
    ["x" * 100_000, "dev\\0one", "$dev", "dev one", "dev\\nforged log line", "é" * 65],
)
def test_client_id_follows_aws_iot_rules(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], client_id: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki).replace("client_id: dev-1", f'client_id: "{client_id}"'))
    code, err = check_config(path, capsys)
    assert code == 2
    one_clear_line(err, path, "client_id")
    assert len(err) < 600


def test_longest_aws_client_id_is_accepted(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki).replace("dev-1", "d" * 128))
    assert check_config(path, capsys)[0] == 0


# ------------------------------------------------------------ item 7


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("dns: {name: iot.example.com, nameserver: not-an-ip}\n", "dns.nameserver"),
        (f"control_socket: /run/{'s' * 110}.sock\n", "control_socket"),
        ("heartbeat: {topic: a/#/b}\n", "heartbeat.topic"),
        ("heartbeat: {topic: a/+/b}\n", "heartbeat.topic"),
        ("heartbeat: {topic: $aws/things/x/shadow/update}\n", "heartbeat.topic"),
        ("bridge: {to_cloud: [{filter: a/#/b}]}\n", "bridge.to_cloud[0].filter"),
        ("bridge: {to_cloud: [{filter: a/b+}]}\n", "bridge.to_cloud[0].filter"),
        ("bridge: {from_cloud: [{filter: a/b/c/d/e/f/g/h/i}]}\n", "bridge.from_cloud[0].filter"),
        ("bridge: {to_cloud: 7}\n", "bridge.to_cloud"),
        ('state_dir: "/var/lib/x\\0y"\n', "state_dir"),
        ("{1: a, b: c}\n", "1"),
    ],
)
def test_values_run_cannot_use_are_refused(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki) + extra)
    code, err = check_config(path, capsys)
    assert code == 2
    one_clear_line(err, path, key)


@pytest.mark.parametrize("which", ["ca_file", "cert_file", "key_file"])
@pytest.mark.parametrize("broken", ["missing", "directory", "garbage", "fifo"])
def test_tls_files_run_cannot_use_are_refused(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, broken: str
) -> None:
    bad = tmp_path / "bad.pem"
    if broken == "directory":
        bad.mkdir()
    elif broken == "garbage":
        bad.write_bytes(os.urandom(700))
    elif broken == "fifo":
        os.mkfifo(bad)
    stem = {"ca_file": "ca.pem", "cert_file": "device.pem", "key_file": "device.key"}[which]
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki).replace(f"{pki}/{stem}", str(bad)))
    code, err = check_config(path, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(path) in err and "tls." in err and "Traceback" not in err


def test_mismatched_key_is_refused(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(base(pki).replace("device.key", "observer.key"))
    code, err = check_config(path, capsys)
    assert code == 2
    one_clear_line(err, path, "tls.key_file")


def test_read_only_state_dir_is_refused_for_a_gateway(
    pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(state), str(state)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
    try:
        path = tmp_path / "agent.yaml"
        path.write_text(base(pki) + f"state_dir: {state}\nbridge: {{enabled: true}}\n")
        code, err = check_config(path, capsys)
        assert code == 2
        one_clear_line(err, path, "state_dir")
        assert "not writable" in err
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_non_utf8_and_utf16_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, data in (
        ("latin1.yaml", "client_id: caf\xe9\n".encode("latin-1")),
        ("utf16.yaml", "client_id: dev\n".encode("utf-16")),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        code, err = check_config(path, capsys)
        assert code == 2
        one_clear_line(err, path, "UTF-8")


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in (
        ("lists.yaml", "client_id: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("maps.yaml", "a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"),
    ):
        path = tmp_path / name
        path.write_text(text)
        code, err = check_config(path, capsys)
        assert code == 2
        one_clear_line(err, path, "nested deeper")


def test_special_files_neither_hang_nor_exhaust_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    for path in (Path("/dev/zero"), fifo, big, tmp_path):
        outcome: list[int] = []

        def run(p: Path = path, out: list[int] = outcome) -> None:
            out.append(check_config(p, capsys)[0])

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(60)  # a generous bound, not a timing assertion: a hang fails here
        if worker.is_alive():  # unblock the FIFO so the test run itself can end
            with open(fifo, "w"):
                pass
        assert outcome == [2], path


# ------------------------------------------------------------ item 3

BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.parametrize("where", ["client_id", "unknown"])
def test_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path, where: str) -> None:
    """In a child process with a 1 GiB address-space limit: the bomb
    expands to 9^9 strings, so anything that expands it dies there."""
    path = tmp_path / "agent.yaml"
    body = BOMB if where == "unknown" else BOMB + "client_id: *i\n"
    path.write_text("tls: {ca_file: a, cert_file: b, key_file: c}\n" + body)
    limit = 1024**3
    result = subprocess.run(
        [sys.executable, "-m", "iotdr.agent.main", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr and "aliases" in result.stderr


def test_reasonable_aliases_still_work(pki: Path, tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        base(pki)
        + "failback: &fast {probe_interval_s: 1}\n"
        + "x-unused: 1\n" * 0
        + "bridge: {to_cloud: [{filter: a/#}, {filter: b/#}]}\n"
    )
    assert load([path]).settings.failback.probe_interval_s == 1


# ------------------------------------------------------------ the fuzz

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["tcp", "mqtt", "a/#/b", "a/#", "$aws/x", "not-an-ip", "127.0.0.1", "debug"]),
)
_KEYS = [
    "client_id",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "endpoints",
    "primary",
    "secondary",
    "host",
    "port",
    "dns",
    "name",
    "nameserver",
    "allowlist",
    "min_ttl_s",
    "max_ttl_s",
    "connection",
    "keepalive_s",
    "ack_timeout_s",
    "connect_spread_s",
    "backoff",
    "initial_s",
    "max_s",
    "multiplier",
    "failback",
    "enabled",
    "probe_depth",
    "stability_window_s",
    "jitr",
    "retry_delays_s",
    "heartbeat",
    "topic",
    "interval_s",
    "bridge",
    "to_cloud",
    "from_cloud",
    "filter",
    "spool",
    "max_bytes",
    "path",
    "control_socket",
    "state_dir",
    "log_level",
    "message_id_property",
]
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), _scalars), inner, max_size=5),
    ),
    max_leaves=25,
)
_documents = st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=_documents, text=st.one_of(st.none(), st.text(max_size=200)))
def test_any_yaml_gives_settings_or_one_line_naming_file_and_key(
    fuzz_dir: Path, document: dict[object, object], text: str | None
) -> None:
    path = fuzz_dir / "agent.yaml"
    if text is None:
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load([path])
    except ConfigError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith(str(path))
        assert exc.key and len(line) < 1000
