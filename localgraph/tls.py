"""A throw-away certificate authority for the local Graph.

The server presents a certificate for 127.0.0.1/localhost signed by a test CA; clients trust the CA file
(httpx ``verify=``, azure-identity ``connection_verify=``). The app registration's client certificate
(for ``CertificateCredential``) is issued by the same CA. Keys are RSA 2048, valid for a few days.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class IssuedCertificate:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def thumbprint_sha1(self) -> bytes:
        return hashlib.sha1(self.cert.public_bytes(serialization.Encoding.DER)).digest()

    @property
    def thumbprint_sha256(self) -> bytes:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).digest()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Local Graph test bed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca() -> IssuedCertificate:
    key = _key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Local Graph Test CA"))
        .issuer_name(_name("Local Graph Test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(cert, key)


def issue(ca: IssuedCertificate, common_name: str, *, server: bool) -> IssuedCertificate:
    key = _key()
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return IssuedCertificate(builder.sign(ca.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class TlsMaterial:
    """Files written for one server: the CA to trust, the server's pair, the client certificate."""

    directory: Path
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path  # PEM: private key followed by certificate, as CertificateCredential reads it
    client: IssuedCertificate
    server: IssuedCertificate  # its key also signs the access tokens the local Graph issues


def load_or_write_material(directory: Path) -> TlsMaterial:
    """Reuse the material in ``directory`` if it is there and still valid for a day, else write new."""
    try:
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        server_cert = x509.load_pem_x509_certificate((directory / "server.pem").read_bytes())
        server_key = serialization.load_pem_private_key((directory / "server-key.pem").read_bytes(), None)
        client_pem = (directory / "client.pem").read_bytes()
        client_cert = x509.load_pem_x509_certificate(client_pem)
        client_key = serialization.load_pem_private_key(client_pem, None)
    except (OSError, ValueError):
        return write_material(directory)
    if min(ca_cert.not_valid_after_utc, server_cert.not_valid_after_utc) < datetime.now(UTC) + timedelta(
        days=1
    ):
        return write_material(directory)
    return TlsMaterial(
        directory=directory,
        ca_file=directory / "ca.pem",
        server_cert_file=directory / "server.pem",
        server_key_file=directory / "server-key.pem",
        client_cert_file=directory / "client.pem",
        client=IssuedCertificate(client_cert, client_key),
        server=IssuedCertificate(server_cert, server_key),
    )


def write_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    server = issue(ca, "localhost", server=True)
    client = issue(ca, "local-graph-connector-app", server=False)
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_pem,
        "server-key.pem": server.key_pem,
        "client.pem": client.key_pem + client.cert_pem,
    }
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
    return TlsMaterial(
        directory=directory,
        ca_file=directory / "ca.pem",
        server_cert_file=directory / "server.pem",
        server_key_file=directory / "server-key.pem",
        client_cert_file=directory / "client.pem",
        client=client,
        server=server,
    )
