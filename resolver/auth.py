"""Who is calling: the principal behind a gRPC call, from its verified TLS client certificate.

The management listener requires a client certificate signed by the node CA (TLS verifies the
chain); here the certificate's role and prefix are read and its fingerprint checked against the
node's current credentials, so a re-issued credential revokes the old one. Calls without a
certificate (the public listener) are anonymous and may only resolve.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from registry.errors import PermissionDenied, Unauthenticated
from registry.model import Principal, Role
from registry.service import Registry
from resolver import pki

_PARSED_MAX = 4096


class Authenticator:
    """Maps a verified client certificate to a :class:`Principal`, for gRPC calls and (through
    :meth:`principal_for_pem`) the Handle REST API and HierarchyService; parsed certificates are
    memoised (bounded), the fingerprint check against the store runs on every call."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._parsed: dict[bytes, pki.ClientIdentity | None] = {}
        self._lock = threading.Lock()

    def _identify(self, cert_pem: bytes) -> pki.ClientIdentity | None:
        try:
            return self._parsed[cert_pem]
        except KeyError:
            pass
        identity = pki.identify(cert_pem)
        with self._lock:
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            self._parsed[cert_pem] = identity
        return identity

    def principal(self, context: grpc.ServicerContext) -> Principal:
        """The caller's principal; UNAUTHENTICATED for an anonymous or unknown caller."""
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            raise Unauthenticated(
                "this call needs a node-issued client certificate, on the management listener",
                reason="CREDENTIAL_REQUIRED",
            )
        return self.principal_for_pem(certs[0])

    def principal_for_pem(
        self, cert_pem: bytes, node: Callable[[str, str], Principal] | None = None
    ) -> Principal:
        """The principal of a verified client certificate (PEM). A node credential is accepted
        only where ``node`` (``(prefix, fingerprint) -> Principal``, the root's route table) is
        given; elsewhere it is PERMISSION_DENIED ``NODE_CREDENTIAL``. UNAUTHENTICATED for a
        certificate that is not an idnode credential or no longer current."""
        identity = self._identify(cert_pem)
        if identity is None:
            raise Unauthenticated("the client certificate is not an idnode credential")
        if identity.role is Role.ADMIN:
            return self.registry.authenticate_admin(identity.fingerprint)
        if identity.role is Role.NODE:
            if node is None:
                raise PermissionDenied(
                    "a node credential is only for registering routes", reason="NODE_CREDENTIAL"
                )
            return node(identity.prefix, identity.fingerprint)
        return self.registry.authenticate_enterprise(identity.prefix, identity.fingerprint)
