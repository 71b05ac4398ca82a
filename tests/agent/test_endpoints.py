"""Endpoints hash and compare as the generated dataclass methods would."""

from __future__ import annotations

import pickle
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from iotdr.agent.core.endpoints import Endpoint, endpoint_at, host_allowed

HOST = "abc-ats.iot.region-a.example.com"


def test_the_kept_hash_is_the_fields_hash() -> None:
    endpoint = Endpoint(host=HOST, port=8883)
    assert hash(endpoint) == hash((HOST, 8883))
    assert hash(replace(endpoint, port=443)) == hash((HOST, 443))


def test_equality_is_by_fields_and_class() -> None:
    endpoint = Endpoint(host=HOST, port=8883)
    assert endpoint == Endpoint(host=HOST, port=8883) == endpoint_at(HOST.upper(), 8883)
    assert endpoint != Endpoint(host=HOST, port=443)
    assert endpoint != (HOST, 8883)
    assert len({endpoint, Endpoint(host=HOST, port=8883)}) == 1


def test_a_pickled_endpoint_hashes_anew() -> None:
    # A string's hash differs between processes: the kept hash must not travel.
    endpoint = Endpoint(host=HOST, port=8883)
    assert endpoint.__reduce__()[1] == (HOST, 8883)
    copy = pickle.loads(pickle.dumps(endpoint))
    assert copy == endpoint and hash(copy) == hash(endpoint)


@given(
    st.sampled_from([HOST, HOST.upper() + ".", "abc-ats.iot.region-x.evil.test", "x"]),
    st.lists(st.sampled_from(["*.iot.*.example.com", "ABC-*", "*.test", "x"]), max_size=3),
)
def test_a_remembered_allowlist_answer_is_the_one_worked_out(
    host: str, allowlist: list[str]
) -> None:
    patterns = tuple(allowlist)
    assert host_allowed(host, patterns) == host_allowed.__wrapped__(host, patterns)
    assert host_allowed(host, patterns) == host_allowed(host, patterns)
