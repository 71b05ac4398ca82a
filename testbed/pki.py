"""A throwaway PKI for one testbed, made with `cryptography`.

Two CAs: the testbed CA that signs the region servers and the clients, and a
"rogue" CA whose region certificates clients must refuse (the tls-bad fault).
EC P-256 keys keep generation instant. Certificates carry the extensions a
strict verifier expects (key identifiers, key usage, extended key usage).
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotdr.testbed.layout import Layout
from iotdr.testbed.topology import DEVICE_CLIENT_ID, OBSERVER_CLIENT_ID, REGIONS, RegionSpec

_VALIDITY = datetime.timedelta(days=365)
# Tolerates a little clock skew between the machine and a freshly made cert.
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotdr testbed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _write(
    layout: Layout, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    _write_pair(layout.pem(name), layout.key(name), cert, key)


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _make_ca(layout: Layout, name: str, common_name: str) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(common_name), key.public_key())
        .issuer_name(_name(common_name))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(layout, name, cert, key)
    return _Issuer(cert=cert, key=key)


def _leaf(
    issuer: _Issuer,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), key.public_key())
        .issuer_name(issuer.cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


def _make_leaf(
    layout: Layout,
    name: str,
    issuer: _Issuer,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName] | None = None,
) -> None:
    cert, key = _leaf(issuer, common_name=common_name, usage=usage, alt_names=alt_names)
    _write(layout, name, cert, key)


def issue_client_certificates(layout: Layout, client_ids: list[str], directory: Path) -> None:
    """A client certificate (CN = client id) and key per id, signed by the
    testbed CA, as `directory/ID.pem` and `directory/ID.key` (mode 0600);
    ids that already have both files are kept. `directory/ca.pem` is the CA."""
    ca_cert = x509.load_pem_x509_certificate(layout.pem("ca").read_bytes())
    ca_key = serialization.load_pem_private_key(layout.key("ca").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    issuer = _Issuer(cert=ca_cert, key=ca_key)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(layout.pem("ca").read_bytes())
    for client_id in client_ids:
        cert_path, key_path = directory / f"{client_id}.pem", directory / f"{client_id}.key"
        if cert_path.exists() and key_path.exists():
            continue
        cert, key = _leaf(issuer, common_name=client_id, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        _write_pair(cert_path, key_path, cert, key)


def _server_alt_names(region: RegionSpec) -> list[x509.GeneralName]:
    return [
        x509.DNSName(region.host),
        x509.IPAddress(ipaddress.IPv4Address(region.address)),
    ]


def rogue_name(region: RegionSpec) -> str:
    """File stem of the region certificate signed by the rogue CA."""
    return f"{region.name}-rogue"


def create_pki(layout: Layout) -> None:
    """Writes all keys and certificates into layout.pki (keys mode 0600)."""
    layout.pki.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(layout, "ca", "iotdr testbed CA")
    rogue = _make_ca(layout, "rogue-ca", "iotdr rogue CA")
    server_auth = ExtendedKeyUsageOID.SERVER_AUTH
    for region in REGIONS.values():
        alt_names = _server_alt_names(region)
        for stem, issuer in ((region.name, ca), (rogue_name(region), rogue)):
            _make_leaf(
                layout,
                stem,
                issuer,
                common_name=region.host,
                usage=server_auth,
                alt_names=alt_names,
            )
    client_auth = ExtendedKeyUsageOID.CLIENT_AUTH
    _make_leaf(layout, "device", ca, common_name=DEVICE_CLIENT_ID, usage=client_auth)
    _make_leaf(layout, "observer", ca, common_name=OBSERVER_CLIENT_ID, usage=client_auth)
