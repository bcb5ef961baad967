"""The layout of a node's data directory and ``idnode init``.

::

    DATA_DIR/
      db/                       RocksDB (records, enterprises, counters, ...)
      tls/ca.pem                node CA certificate (public)
      tls/ca.key                node CA private key (0600): issues credentials
      tls/server.pem, .key      management listener certificate (key 0600)
      credentials/admin/        the administrator's client credential (key 0600)
      credentials/<prefix>/     credentials issued locally for the demo enterprise

Everything secret is written with mode 0600 inside 0700 directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from registry.model import Role
from registry.rocks import RocksStore
from registry.service import init_node, set_admin_fingerprints
from resolver import pki


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CredentialFiles:
    """A client credential on disk: ``cert.pem``, ``key.pem`` and the node's ``ca.pem``."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def exists(self) -> bool:
        return self.cert.exists() and self.key.exists() and self.ca.exists()

    def save(self, pair: pki.KeyPair, ca_pem: bytes) -> None:
        write_public(self.cert, pair.cert_pem)
        write_private(self.key, pair.key_pem)
        write_public(self.ca, ca_pem)


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "db"

    @property
    def ca_cert(self) -> Path:
        return self.root / "tls" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "tls" / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "tls" / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "tls" / "server.key"

    @property
    def admin(self) -> CredentialFiles:
        return CredentialFiles(self.root / "credentials" / "admin")

    def enterprise_credentials(self, prefix: str) -> CredentialFiles:
        return CredentialFiles(self.root / "credentials" / prefix)

    def issue_enterprise_credential(self, prefix: str) -> str:
        """Issue a credential of enterprise ``prefix`` from this node's CA, save it under
        ``credentials/PREFIX`` and return its fingerprint (an ``issue_fingerprint`` for
        :meth:`registry.service.Registry.create_enterprise`)."""
        ca = self.ca()
        pair = pki.issue_client_cert(ca, Role.ENTERPRISE, prefix)
        self.enterprise_credentials(prefix).save(pair, ca.cert_pem)
        return pki.fingerprint(pair.cert_pem)

    def initialised(self) -> bool:
        return self.ca_key.exists() and self.db.exists()

    def ca(self) -> pki.KeyPair:
        return pki.KeyPair(self.ca_cert.read_bytes(), self.ca_key.read_bytes())

    def init(self, node_prefix: str, hosts: list[str] | None = None) -> None:
        """Create the store, CA, server certificate and admin credential. Idempotent: existing
        files are kept; a store that belongs to another node prefix is refused."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with RocksStore(self.db) as store:
            init_node(store, node_prefix)
            if not self.ca_key.exists():
                ca = pki.create_ca(node_prefix)
                write_public(self.ca_cert, ca.cert_pem)
                write_private(self.ca_key, ca.key_pem)
            ca = self.ca()
            if not self.server_key.exists():
                server = pki.issue_server_cert(ca, hosts or [])
                write_public(self.server_cert, server.cert_pem)
                write_private(self.server_key, server.key_pem)
            if not self.admin.exists():
                pair = pki.issue_client_cert(ca, Role.ADMIN)
                self.admin.save(pair, ca.cert_pem)
                set_admin_fingerprints(store, [pki.fingerprint(pair.cert_pem)])
