"""Every CloudFormation template is cfn-lint clean and ships with the package."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

TEMPLATES = sorted(
    Path(str(p))
    for p in resources.files("iotdr.cloud").joinpath("templates").iterdir()
    if p.name.endswith(".yaml")
)


def test_the_package_has_its_templates() -> None:
    assert {p.name for p in TEMPLATES} >= {"region.yaml", "replication-table.yaml", "dns.yaml"}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_is_clean(template: Path) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(template)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
