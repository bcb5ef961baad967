"""A small client for enterprises, operators and the CLI.

Wraps the generated stubs with credentials (mutual TLS from a credential directory holding
``cert.pem``, ``key.pem`` and ``ca.pem``), a default deadline on every call, and gRPC's own
retry policy for UNAVAILABLE on the calls that are safe to repeat (resolution, reads, and batch
creation carrying a request_id). Failures raise :class:`IdnodeRpcError` with the status code,
ErrorInfo reason and field violations decoded.

Example::

    from resolver.client import IdnodeClient, value
    with IdnodeClient("localhost:8471", credentials="data/credentials/88.118.8") as c:
        c.create("88.118.8/ABC-0001", [value(1, "URL", "https://example.com/p/1")])
    with IdnodeClient("localhost:8470") as c:
        print(c.resolve("88.118.8/abc-0001").values[0].text)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from registry.pb import admin_pb2, changes_pb2, hierarchy_pb2, record_pb2, registration_pb2, resolution_pb2
from resolver.pb import (
    admin_pb2_grpc,
    changes_pb2_grpc,
    hierarchy_pb2_grpc,
    registration_pb2_grpc,
    resolution_pb2_grpc,
)

DEFAULT_TIMEOUT = 10.0
_MAX_ATTEMPTS = 4
_RETRY = {
    "maxAttempts": _MAX_ATTEMPTS,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "idnode.v1.ResolutionService"},
                    {"service": "idnode.v1.RegistrationService", "method": "GetIdentifier"},
                    {"service": "idnode.v1.RegistrationService", "method": "ListIdentifiers"},
                    {"service": "idnode.v1.AdminService", "method": "GetEnterprise"},
                    {"service": "idnode.v1.AdminService", "method": "ListEnterprises"},
                    {"service": "idnode.v1.AdminService", "method": "GetNodeStats"},
                ],
                "retryPolicy": _RETRY,
            }
        ]
    }
)


class IdnodeRpcError(Exception):
    """A failed call: canonical ``code``, ``message``, ErrorInfo ``reason`` and BadRequest
    ``violations`` as (field, description) pairs."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        violations: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(code, message, reason, violations)
        self.code = code
        self.message = message
        self.reason = reason
        self.violations = violations

    def __str__(self) -> str:
        name = self.code.name if self.code else "UNKNOWN"
        return f"{name}: {self.message}" + (f" [{self.reason}]" if self.reason else "")

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> IdnodeRpcError:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        reason, violations = status_details(status) if status is not None else ("", ())
        return cls(err.code(), err.details() or "", reason, violations)  # type: ignore[attr-defined]


def status_details(status: status_pb2.Status) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(ErrorInfo reason, BadRequest (field, description) pairs) of a ``google.rpc.Status``; ""
    and () for details it does not carry."""
    reason = ""
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return reason, tuple(violations)


def all_pages(fetch: Callable[[str], Any], items: str) -> Iterator[Any]:
    """Every item of a paginated listing (AIP-158): ``fetch(page_token)`` returns one page whose
    field ``items`` holds that page's items; pages are fetched lazily until the token is empty."""
    token = ""
    while True:
        page = fetch(token)
        yield from getattr(page, items)
        token = page.next_page_token
        if not token:
            return


def value(index: int, type_: str, data: str | bytes, ttl: int | None = None) -> record_pb2.Value:
    """Build one record value."""
    v = record_pb2.Value(index=index, type=type_)
    if isinstance(data, bytes):
        v.binary = data
    else:
        v.text = data
    if ttl is not None:
        v.ttl = ttl
    return v


class IdnodeClient:
    """A channel to one listener. Pass ``credentials`` (a directory with cert.pem, key.pem,
    ca.pem) for the management listener; leave it out for the public one (``ca`` alone gives
    server-authenticated TLS)."""

    def __init__(
        self,
        target: str,
        *,
        credentials: str | Path | None = None,
        ca: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: bool = True,
        channel_options: Sequence[tuple[str, object]] = (),
    ) -> None:
        """``channel_options``: extra gRPC channel arguments (e.g. reconnect backoff)."""
        options: list[tuple[str, object]] = [
            *channel_options,
            ("grpc.max_receive_message_length", 128 << 20),
            ("grpc.enable_retries", 1 if retries else 0),
        ]
        if retries:
            options.append(("grpc.service_config", _SERVICE_CONFIG))
        if credentials is not None:
            d = Path(credentials)
            creds = grpc.ssl_channel_credentials(
                root_certificates=(d / "ca.pem").read_bytes(),
                private_key=(d / "key.pem").read_bytes(),
                certificate_chain=(d / "cert.pem").read_bytes(),
            )
            self.channel = grpc.secure_channel(target, creds, options=options)
        elif ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.timeout = timeout
        self.retries = retries
        self.resolution = resolution_pb2_grpc.ResolutionServiceStub(self.channel)
        self.registration = registration_pb2_grpc.RegistrationServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.changes = changes_pb2_grpc.ChangeFeedServiceStub(self.channel)
        self.hierarchy = hierarchy_pb2_grpc.HierarchyServiceStub(self.channel)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object, timeout: float | None) -> object:
        try:
            return method(request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise IdnodeRpcError.from_rpc_error(err) from None

    def _call_retrying(
        self, method: grpc.UnaryUnaryMultiCallable, request: object, timeout: float | None
    ) -> object:
        """``_call`` with the retry policy of ``_RETRY`` applied here, for a call that is safe to
        repeat only for some requests (a service config cannot tell them apart)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        backoff = 0.1
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.001))
            except grpc.RpcError as err:
                pause = random.uniform(0, backoff)
                if (
                    err.code() is not grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                    or attempt == _MAX_ATTEMPTS
                    or time.monotonic() + pause >= deadline
                ):
                    raise IdnodeRpcError.from_rpc_error(err) from None
            time.sleep(pause)
            backoff = min(backoff * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # resolution
    def resolve(
        self,
        identifier: str,
        types: Sequence[str] = (),
        indexes: Sequence[int] = (),
        timeout: float | None = None,
    ) -> record_pb2.Record:
        req = resolution_pb2.ResolveRequest(identifier=identifier, types=types, indexes=indexes)
        return self._call(self.resolution.Resolve, req, timeout).record  # type: ignore[attr-defined]

    def batch_resolve(
        self,
        identifiers: Sequence[str],
        types: Sequence[str] = (),
        indexes: Sequence[int] = (),
        timeout: float | None = None,
        recursive: bool = False,
    ) -> list[resolution_pb2.ResolveResult]:
        """One result per identifier: ``record``, ``error``, or ``referral`` (another node serves
        it and ``recursive`` is False)."""
        req = resolution_pb2.BatchResolveRequest(
            identifiers=identifiers, types=types, indexes=indexes, recursive=recursive
        )
        return list(self._call(self.resolution.BatchResolve, req, timeout).results)  # type: ignore[attr-defined]

    def stream_resolve(
        self, batches: Iterable[Sequence[str]], timeout: float | None = None
    ) -> Iterator[list[resolution_pb2.ResolveResult]]:
        """One answer (a list of results) per batch of identifiers sent, in order."""
        requests = (resolution_pb2.StreamResolveRequest(identifiers=b) for b in batches)
        try:
            for response in self.resolution.StreamResolve(requests, timeout=timeout):
                yield list(response.results)
        except grpc.RpcError as err:
            raise IdnodeRpcError.from_rpc_error(err) from None

    # registration
    def create(
        self,
        identifier: str,
        values: Sequence[record_pb2.Value],
        timeout: float | None = None,
        template: str = "",
    ) -> record_pb2.Record:
        """``template``: ``name@version`` to register against (validated by the node)."""
        req = registration_pb2.CreateIdentifierRequest(
            record=record_pb2.Record(identifier=identifier, values=values, template=template)
        )
        return self._call(self.registration.CreateIdentifier, req, timeout)  # type: ignore[return-value]

    def get(self, identifier: str, timeout: float | None = None) -> record_pb2.Record:
        req = registration_pb2.GetIdentifierRequest(identifier=identifier)
        return self._call(self.registration.GetIdentifier, req, timeout)  # type: ignore[return-value]

    def update(
        self,
        identifier: str,
        values: Sequence[record_pb2.Value],
        etag: str = "",
        timeout: float | None = None,
        template: str = "",
    ) -> record_pb2.Record:
        """``template`` empty keeps the record's template."""
        req = registration_pb2.UpdateIdentifierRequest(
            record=record_pb2.Record(identifier=identifier, values=values, etag=etag, template=template)
        )
        return self._call(self.registration.UpdateIdentifier, req, timeout)  # type: ignore[return-value]

    def delete(self, identifier: str, etag: str = "", timeout: float | None = None) -> None:
        req = registration_pb2.DeleteIdentifierRequest(identifier=identifier, etag=etag)
        self._call(self.registration.DeleteIdentifier, req, timeout)

    def list(
        self, parent: str, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> registration_pb2.ListIdentifiersResponse:
        req = registration_pb2.ListIdentifiersRequest(
            parent=parent, page_size=page_size, page_token=page_token
        )
        return self._call(self.registration.ListIdentifiers, req, timeout)  # type: ignore[return-value]

    def list_all(self, parent: str, page_size: int = 1000) -> Iterator[record_pb2.Record]:
        return all_pages(lambda token: self.list(parent, page_size, token), "records")

    def batch_create(
        self,
        records: Sequence[tuple[str, Sequence[record_pb2.Value]]],
        request_id: str = "",
        timeout: float | None = None,
        template: str = "",
        templates: Sequence[str] | None = None,
    ) -> list[registration_pb2.CreateResult]:
        """Create ``records`` (identifier, values) in one call; ``template`` (``name@version``)
        applies to every record, but where ``templates[i]`` names one for record ``i``."""
        own = templates or [""] * len(records)
        req = registration_pb2.BatchCreateIdentifiersRequest(
            requests=[
                registration_pb2.CreateIdentifierRequest(
                    record=record_pb2.Record(identifier=i, values=v, template=t or template)
                )
                for (i, v), t in zip(records, own, strict=True)
            ],
            request_id=request_id,
        )
        # Safe to repeat only with a request_id: the node answers a retry with the first answer.
        call = self._call_retrying if request_id and self.retries else self._call
        return list(call(self.registration.BatchCreateIdentifiers, req, timeout).results)  # type: ignore[attr-defined]

    # administration
    def create_enterprise(
        self, code: str = "", display_name: str = "", contact: str = "", timeout: float | None = None
    ) -> admin_pb2.CreateEnterpriseResponse:
        req = admin_pb2.CreateEnterpriseRequest(code=code, display_name=display_name, contact=contact)
        return self._call(self.admin.CreateEnterprise, req, timeout)  # type: ignore[return-value]

    def get_enterprise(self, prefix: str, timeout: float | None = None) -> admin_pb2.Enterprise:
        return self._call(self.admin.GetEnterprise, admin_pb2.GetEnterpriseRequest(prefix=prefix), timeout)  # type: ignore[return-value]

    def list_enterprises(self, page_size: int = 0, page_token: str = "") -> admin_pb2.ListEnterprisesResponse:
        req = admin_pb2.ListEnterprisesRequest(page_size=page_size, page_token=page_token)
        return self._call(self.admin.ListEnterprises, req, None)  # type: ignore[return-value]

    def suspend_enterprise(self, prefix: str) -> admin_pb2.Enterprise:
        return self._call(
            self.admin.SuspendEnterprise, admin_pb2.SuspendEnterpriseRequest(prefix=prefix), None
        )  # type: ignore[return-value]

    def remove_enterprise(self, prefix: str, timeout: float | None = None) -> None:
        """Remove a suspended enterprise without identifiers (its prefix is withdrawn upstream)."""
        self._call(self.admin.RemoveEnterprise, admin_pb2.RemoveEnterpriseRequest(prefix=prefix), timeout)

    # hierarchy
    def resolve_response(
        self,
        identifier: str,
        types: Sequence[str] = (),
        indexes: Sequence[int] = (),
        recursive: bool = False,
        timeout: float | None = None,
    ) -> resolution_pb2.ResolveResponse:
        """The whole ResolveResponse: ``record``, or ``referral`` when another node serves the
        identifier and ``recursive`` is False."""
        req = resolution_pb2.ResolveRequest(
            identifier=identifier, types=types, indexes=indexes, recursive=recursive
        )
        return self._call(self.resolution.Resolve, req, timeout)  # type: ignore[return-value]

    def lookup_route(self, prefix: str, timeout: float | None = None) -> hierarchy_pb2.Route:
        req = hierarchy_pb2.LookupRouteRequest(prefix=prefix)
        return self._call(self.hierarchy.LookupRoute, req, timeout)  # type: ignore[return-value]

    def register_prefix(
        self, prefix: str, node_address: str, timeout: float | None = None
    ) -> hierarchy_pb2.Route:
        req = hierarchy_pb2.RegisterPrefixRequest(prefix=prefix, node_address=node_address)
        return self._call(self.hierarchy.RegisterPrefix, req, timeout)  # type: ignore[return-value]

    def withdraw_prefix(self, prefix: str, timeout: float | None = None) -> None:
        self._call(self.hierarchy.WithdrawPrefix, hierarchy_pb2.WithdrawPrefixRequest(prefix=prefix), timeout)

    def add_node_route(
        self, prefix: str, node_address: str, node_id: str = "", issue_credential: bool = False
    ) -> hierarchy_pb2.AddNodeRouteResponse:
        req = hierarchy_pb2.AddNodeRouteRequest(
            prefix=prefix, node_address=node_address, node_id=node_id, issue_credential=issue_credential
        )
        return self._call(self.hierarchy.AddNodeRoute, req, None)  # type: ignore[return-value]

    def remove_route(self, prefix: str) -> None:
        self._call(self.hierarchy.RemoveRoute, hierarchy_pb2.RemoveRouteRequest(prefix=prefix), None)

    def list_routes(self, page_size: int = 0, page_token: str = "") -> hierarchy_pb2.ListRoutesResponse:
        req = hierarchy_pb2.ListRoutesRequest(page_size=page_size, page_token=page_token)
        return self._call(self.hierarchy.ListRoutes, req, None)  # type: ignore[return-value]

    def resume_enterprise(self, prefix: str) -> admin_pb2.Enterprise:
        return self._call(self.admin.ResumeEnterprise, admin_pb2.ResumeEnterpriseRequest(prefix=prefix), None)  # type: ignore[return-value]

    def stats(self) -> admin_pb2.NodeStats:
        return self._call(self.admin.GetNodeStats, admin_pb2.GetNodeStatsRequest(), None)  # type: ignore[return-value]

    def update_enterprise(
        self,
        prefix: str,
        *,
        display_name: str | None = None,
        contact: str | None = None,
        require_template: bool | None = None,
    ) -> admin_pb2.Enterprise:
        """Change the given attributes (None: unchanged)."""
        e = admin_pb2.Enterprise(prefix=prefix)
        paths = []
        for name, v in (
            ("display_name", display_name),
            ("contact", contact),
            ("require_template", require_template),
        ):
            if v is not None:
                setattr(e, name, v)
                paths.append(name)
        req = admin_pb2.UpdateEnterpriseRequest(
            enterprise=e, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return self._call(self.admin.UpdateEnterprise, req, None)  # type: ignore[return-value]

    # templates
    def create_template(self, template: admin_pb2.Template) -> admin_pb2.Template:
        req = admin_pb2.CreateTemplateRequest(template=template)
        return self._call(self.admin.CreateTemplate, req, None)  # type: ignore[return-value]

    def get_template(self, ref: str) -> admin_pb2.Template:
        """Public (ResolutionService): works on either listener, without credentials."""
        req = resolution_pb2.GetTemplateRequest(template=ref)
        return self._call(self.resolution.GetTemplate, req, None)  # type: ignore[return-value]

    def list_templates(
        self, page_size: int = 0, page_token: str = "", name: str = "", active_only: bool = False
    ) -> admin_pb2.ListTemplatesResponse:
        req = admin_pb2.ListTemplatesRequest(
            page_size=page_size, page_token=page_token, name=name, active_only=active_only
        )
        return self._call(self.admin.ListTemplates, req, None)  # type: ignore[return-value]

    def deprecate_template(self, ref: str) -> admin_pb2.Template:
        req = admin_pb2.DeprecateTemplateRequest(template=ref)
        return self._call(self.admin.DeprecateTemplate, req, None)  # type: ignore[return-value]

    # audit trail and change feed
    def list_audit(
        self,
        *,
        enterprise: str = "",
        identifier: str = "",
        since_ns: int = 0,
        until_ns: int = 0,
        page_size: int = 0,
        page_token: str = "",
    ) -> admin_pb2.ListAuditEntriesResponse:
        req = admin_pb2.ListAuditEntriesRequest(
            enterprise=enterprise, identifier=identifier, page_size=page_size, page_token=page_token
        )
        if since_ns:
            req.start_time.CopyFrom(Timestamp(seconds=since_ns // 10**9, nanos=since_ns % 10**9))
        if until_ns:
            req.end_time.CopyFrom(Timestamp(seconds=until_ns // 10**9, nanos=until_ns % 10**9))
        return self._call(self.admin.ListAuditEntries, req, None)  # type: ignore[return-value]

    def verify_audit(self, timeout: float | None = None) -> admin_pb2.VerifyAuditTrailResponse:
        req = admin_pb2.VerifyAuditTrailRequest()
        return self._call(self.admin.VerifyAuditTrail, req, timeout)  # type: ignore[return-value]

    def watch_changes(
        self,
        after_sequence: int = 0,
        prefix: str = "",
        from_now: bool = False,
        timeout: float | None = None,
    ) -> Iterator[changes_pb2.Change]:
        """Every change after ``after_sequence`` (the last one processed), then live ones, until
        the caller stops iterating (closing the generator cancels the stream) or an error
        (IdnodeRpcError: FAILED_PRECONDITION CHANGE_FEED_CURSOR_EXPIRED means resync; UNAVAILABLE
        means reconnect with the last sequence). ``timeout``: a deadline for the whole stream
        (default none)."""
        req = changes_pb2.WatchChangesRequest(prefix=prefix, after_sequence=after_sequence, from_now=from_now)
        return self._changes(self.changes.WatchChanges(req, timeout=timeout))

    @staticmethod
    def _changes(call: grpc.Call) -> Iterator[changes_pb2.Change]:
        try:
            for response in call:
                yield from response.changes
        except grpc.RpcError as err:
            raise IdnodeRpcError.from_rpc_error(err) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> IdnodeClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
