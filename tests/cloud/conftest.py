from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.cloud.regions import MotoRegions


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, so nothing can ever reach a real account."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def regions(aws_credentials: None) -> Iterator[MotoRegions]:
    with mock_aws():
        yield MotoRegions.create()
