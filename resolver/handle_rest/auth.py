"""Who is calling the Handle REST API: a TLS client certificate, or HTTP Basic with a password.

Client certificate (HTTPS listener): the node asks for one (``CERT_OPTIONAL``) and TLS verifies it
against the node CA; its role (OU) and enterprise prefix (CN) are read as for gRPC
(:mod:`resolver.pki`) and its fingerprint checked against the enterprise's or the administrator's
*current* credentials (:meth:`Registry.authenticate_enterprise` / ``authenticate_admin``). Sending
``Authorization: Handle clientCert="true"`` (pyhandle) is allowed but not needed.

HTTP Basic, Handle's ``index:handle`` form: the user is ``300:PREFIX/admin`` (percent-encoded by
pyhandle as ``300%3APREFIX/admin``) for enterprise ``PREFIX``, the password one set with
``idnode enterprise set-password PREFIX`` (``PUT /idnode/v1/passwords/PREFIX`` as the
administrator or the enterprise itself). The node stores only a salted scrypt hash
(N=2^14, r=8, p=1, 16-byte salt; about 50 ms to check) in its META table; the password itself is
never stored or logged. Setting a password also registers ``PREFIX/admin`` (one HS_ADMIN value)
if it is missing, because pyhandle resolves the user's handle publicly before it writes.

The principal either way is the one gRPC would get; every authorization rule (own prefix only,
ACTIVE enterprises only, ...) is then :class:`Registry`'s.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import ssl
import threading
from urllib.parse import unquote

from registry.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from registry.identifier import fold, parse, parse_prefix
from registry.model import Principal, Value
from registry.service import Registry
from registry.store import Put, Table, Txn
from resolver.auth import Authenticator
from resolver.handle_rest.codec import ADMIN_TYPE, admin_text
from resolver.handle_rest.errors import AuthenticationFailed

BASIC_INDEX = 300
"""The index in ``300:PREFIX/admin``, Handle's conventional index of a secret key."""
ADMIN_SUFFIX = "admin"
ADMIN_VALUE_INDEX = 100
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_PASSWORD_KEY = b"rest_password:"
_MEMO_MAX = 4096


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64 parts) of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=1 << 26,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


def admin_handle(prefix: str) -> str:
    return f"{prefix}/{ADMIN_SUFFIX}"


class RestAuthenticator:
    """Maps a request's credentials to a :class:`Principal`. Thread-safe.

    Parsed certificates are memoised (bounded); the fingerprint check runs on every request. A
    verified password is remembered as an HMAC under a per-process random key, bound to the
    stored hash it matched, so repeated requests skip scrypt and a changed password takes effect
    at once.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._certs = Authenticator(registry)
        self._verified: dict[tuple[bytes, str], bytes] = {}
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ principals
    def principal(self, authorization: str, peer_cert_der: bytes | None) -> Principal:
        """The caller behind ``authorization`` (the header, "" if none) and the verified TLS
        client certificate (DER, None if none). Basic wins over a certificate when both are sent.

        Unauthenticated (401/402) without credentials; AuthenticationFailed (401/403) for wrong ones.
        """
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            return self._basic(rest.strip())
        if peer_cert_der:
            return self._certificate(peer_cert_der)
        raise Unauthenticated(
            "this request needs credentials: a node-issued client certificate over HTTPS, "
            "or HTTP Basic as 300:PREFIX/admin",
            reason="CREDENTIAL_REQUIRED",
        )

    def _certificate(self, der: bytes) -> Principal:
        """As gRPC maps it (:meth:`Authenticator.principal_for_pem`); a certificate that is not a
        current credential is AuthenticationFailed, a node credential PermissionDenied."""
        try:
            return self._certs.principal_for_pem(ssl.DER_cert_to_PEM_cert(der).encode())
        except Unauthenticated as exc:
            raise AuthenticationFailed(exc.message) from None

    def _basic(self, token: str) -> Principal:
        failed = AuthenticationFailed("wrong user or password (the user is 300:PREFIX/admin)")
        try:
            text = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise failed from None
        user, colon, password = text.partition(":")
        if user.isdigit():  # an unencoded "300:PREFIX/admin:password"
            handle, colon, password = password.partition(":")
            user = f"{user}:{handle}"
        index, _, handle = unquote(user).partition(":")
        prefix, slash, suffix = handle.partition("/")
        if not colon or not slash or index != str(BASIC_INDEX) or suffix.upper() != ADMIN_SUFFIX.upper():
            raise failed
        stored = self.registry.store.get(Table.META, _PASSWORD_KEY + fold(prefix))
        enterprise = self.registry.enterprise(prefix) if stored is not None else None
        if stored is None or enterprise is None:
            raise failed
        stored_text = stored.decode()
        memo_key = (fold(prefix), stored_text)
        tag = hmac.new(self._secret, password.encode(), hashlib.sha256).digest()
        remembered = self._verified.get(memo_key)
        if remembered is None or not hmac.compare_digest(remembered, tag):
            if not verify_password(password, stored_text):
                raise failed
            with self._lock:
                if len(self._verified) >= _MEMO_MAX:
                    self._verified.clear()
                self._verified[memo_key] = tag
        return Principal.enterprise(enterprise.prefix)

    # ------------------------------------------------------------------ passwords
    def set_password(self, principal: Principal, prefix: str, password: str) -> str:
        """Store a salted scrypt hash of ``password`` for enterprise ``prefix`` and make sure its
        admin handle ``PREFIX/admin`` resolves; returns that handle's spelling.

        Allowed to the administrator and to the enterprise itself while ACTIVE.
        """
        parse_prefix(prefix, "prefix")
        enterprise = self.registry.enterprise(prefix)
        if enterprise is None:
            raise NotFound(
                f"no enterprise has prefix {prefix}",
                reason="ENTERPRISE_NOT_FOUND",
                metadata={"prefix": prefix},
            )
        handle = admin_handle(enterprise.prefix)
        # The owner rule of a write to PREFIX/admin: the administrator, or the (active)
        # enterprise itself; a parent enterprise does not own a sub-prefix allocated to another.
        self.registry.writer_owner(principal, parse(handle, "prefix"), "prefix")
        if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
            raise InvalidArgument.single(
                "password", f"must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
            )
        stored = hash_password(password).encode()
        self.registry.store.commit(
            Txn(writes=(Put(Table.META, _PASSWORD_KEY + fold(enterprise.prefix), stored),))
        )
        admin_value = Value(
            index=ADMIN_VALUE_INDEX,
            type=ADMIN_TYPE,
            data=admin_text(f"0.NA/{enterprise.prefix}", 200, "011111110011"),
        )
        with contextlib.suppress(AlreadyExists):
            self.registry.create(Principal.admin(), handle, [admin_value])
        return handle
