"""Who is calling: the principal behind a gRPC call, from its verified TLS client certificate.

The management listener requires a client certificate signed by the node CA (TLS verifies the
chain); here the certificate's role and prefix are read and its fingerprint checked against the
node's current credentials, so a re-issued credential revokes the old one. Calls without a
certificate (the public listener) are anonymous and may only resolve.
"""

from __future__ import annotations

import threading

import grpc

from registry.errors import PermissionDenied, Unauthenticated
from registry.model import Principal, Role
from registry.service import Registry
from resolver import pki

_PARSED_MAX = 4096


class Authenticator:
    """Maps a call's peer certificate to a :class:`Principal`; parsed certificates are memoised
    (bounded), the fingerprint check against the store runs on every call."""

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
        identity = self._identify(certs[0])
        if identity is None:
            raise Unauthenticated("the client certificate is not an idnode credential")
        if identity.role is Role.ADMIN:
            return self.registry.authenticate_admin(identity.fingerprint)
        if identity.role is Role.NODE:  # only HierarchyService accepts it (resolver.hierarchy)
            raise PermissionDenied(
                "a node credential is only for registering routes", reason="NODE_CREDENTIAL"
            )
        return self.registry.authenticate_enterprise(identity.prefix, identity.fingerprint)
