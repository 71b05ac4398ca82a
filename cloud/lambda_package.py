"""The Lambda code: one zip of the iotdr.cloud package and paho-mqtt, built in memory.

Every function in templates/region.yaml runs from this one archive (their
handlers are `iotdr/cloud/lambda_entry.*`). boto3 is in the Lambda Python
runtime already; paho-mqtt (the health check's MQTT client) and tenacity
(the worker's backoff) are not, so they go in. Entries get a fixed
timestamp, so the same code gives the same bytes and the same S3 key, and
an unchanged deployment updates nothing.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho
import tenacity

import iotdr.cloud

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip cannot store dates before 1980


@dataclass(frozen=True, slots=True)
class LambdaPackage:
    archive: bytes
    sha256: str

    @property
    def key(self) -> str:
        """S3 key named by content: a code change is a new key, so CloudFormation updates."""
        return f"iotdr-cloud-{self.sha256[:16]}.zip"


def build_lambda_package() -> LambdaPackage:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(_files()):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16  # readable by the Lambda runtime's user
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return LambdaPackage(archive=data, sha256=hashlib.sha256(data).hexdigest())


def _files() -> Iterator[tuple[str, Path]]:
    """(name in the archive, file) for iotdr/cloud/*.py, paho/**.py and tenacity/**.py."""
    roots = [(Path(p), "iotdr/cloud") for p in iotdr.cloud.__path__]
    roots += [(Path(p), "paho") for p in paho.__path__]
    roots += [(Path(p), "tenacity") for p in tenacity.__path__]
    for root, prefix in roots:
        for path in root.rglob("*"):
            if path.is_file() and (path.suffix == ".py" or path.name == "py.typed"):
                yield f"{prefix}/{path.relative_to(root).as_posix()}", path
