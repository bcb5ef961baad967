"""The node's small PKI, built on ``cryptography``.

- A node CA (EC P-256) created by ``idnode init``; its private key stays in the data directory
  (mode 0600) and is used only to issue certificates.
- A server certificate for the management listener (and optionally the public one), with
  subjectAltNames for localhost, 127.0.0.1, ::1 and configured host names.
- Client certificates: the subject's CN is the enterprise prefix (or ``admin``) and its OU the
  role. The node keeps only each certificate's SHA-256 fingerprint; the private key is handed to
  the caller once and never stored, so nothing on the node lets anyone impersonate an enterprise
  except the CA key itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.model import Role

ROLE_OU = {Role.ADMIN: "idnode-admin", Role.ENTERPRISE: "idnode-enterprise", Role.NODE: "idnode-node"}
_OU_ROLE = {v: k for k, v in ROLE_OU.items()}
CLIENT_CERT_DAYS = 825
CA_DAYS = 3650


@dataclass(frozen=True, slots=True)
class KeyPair:
    """PEM-encoded certificate and private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """What a verified client certificate says: role, enterprise prefix (empty for admin), fingerprint."""

    role: Role
    prefix: str
    fingerprint: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(node_prefix: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"idnode CA {node_prefix}")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(
    ca: KeyPair, subject: x509.Name, usage: x509.ObjectIdentifier, days: int, sans: list[x509.GeneralName]
) -> KeyPair:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server_cert(ca: KeyPair, hosts: list[str]) -> KeyPair:
    """A TLS server certificate for ``hosts`` (DNS names or IP addresses) plus the loopback names."""
    sans: list[x509.GeneralName] = []
    for host in ["localhost", "127.0.0.1", "::1", *hosts]:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idnode")])
    return _issue(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, CLIENT_CERT_DAYS, list(dict.fromkeys(sans)))


def issue_client_cert(ca: KeyPair, role: Role, prefix: str = "") -> KeyPair:
    """A client certificate for the administrator (``prefix`` empty) or an enterprise."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, prefix or "admin"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ROLE_OU[role]),
        ]
    )
    return _issue(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, CLIENT_CERT_DAYS, [])


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex."""
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


def identify(cert_pem: bytes) -> ClientIdentity | None:
    """Role, prefix and fingerprint named by an already-verified client certificate, or None if it
    is not one of ours (no or unknown OU)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(ous) != 1 or len(cns) != 1:
        return None
    role = _OU_ROLE.get(str(ous[0].value))
    if role is None:
        return None
    prefix = "" if role is Role.ADMIN else str(cns[0].value)
    return ClientIdentity(role, prefix, cert.fingerprint(hashes.SHA256()).hex())
