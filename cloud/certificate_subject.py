"""The subject common name of an X.509 certificate, read from its DER (pure).

The JITR function runs in Lambda, whose Python runtime has no X.509
library (boto3 only), and needs one field: the subject's CN, which names
the device's thing. So this walks the DER (ITU-T X.690) just far enough:

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
        [0] version OPTIONAL, serialNumber, signature, issuer,
        validity, subject, ... } ... }
    Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value DirectoryString }
"""

from __future__ import annotations

import base64
import re

from iotdr.cloud.errors import CloudError

_COMMON_NAME_OID = bytes([0x55, 0x04, 0x03])  # 2.5.4.3
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


class CertificateFormatError(CloudError):
    """Not a PEM X.509 certificate, or one without a subject common name."""


def _element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at offset."""
    if offset + 2 > len(data):
        raise CertificateFormatError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or start + size > len(data):
            raise CertificateFormatError("bad DER length")
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    end = start + length
    if end > len(data):
        raise CertificateFormatError("truncated DER")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children, offset = [], start
    while offset < end:
        child = _element(data, offset)
        children.append(child)
        offset = child[2]
    return children


def subject_common_name(pem: str) -> str:
    match = _PEM.search(pem)
    if not match:
        raise CertificateFormatError("no PEM certificate")
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except ValueError as exc:
        raise CertificateFormatError(f"bad base64: {exc}") from exc
    _, start, end = _element(der, 0)
    _, tbs_start, tbs_end = _children(der, start, end)[0]
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    if len(fields) < 5:
        raise CertificateFormatError("too few fields in tbsCertificate")
    _, subject_start, subject_end = fields[4]
    for _, set_start, set_end in _children(der, subject_start, subject_end):
        for _, pair_start, pair_end in _children(der, set_start, set_end):
            oid, value = _children(der, pair_start, pair_end)[:2]
            if der[oid[1] : oid[2]] == _COMMON_NAME_OID and value[0] in _STRING_TAGS:
                return der[value[1] : value[2]].decode(_STRING_TAGS[value[0]])
    raise CertificateFormatError("the certificate's subject has no common name")
