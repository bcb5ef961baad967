"""ChangeFeedService: every committed change, in commit order, from a resumable cursor.

Served where writes are committed: by the writer process of a RocksDB node (the only one that
commits, so the only one whose :class:`registry.audit.AuditLog` is notified of new changes), or by
any front end of a Redis Cluster. A Redis front end reads the feed and the chain head from the
shared store, so a cursor from one front end is valid on every other (no gap, no duplicate); a
change written through *another* front end reaches its waiting streams when their wait ends
(within :data:`POLL_SECONDS`), one written through itself at once. Needs a credential. The
administrator may watch everything or any prefix; an enterprise only its own prefix (the default).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from registry.errors import Unavailable
from registry.identifier import Identifier, parse_prefix
from registry.model import Role
from registry.pb import changes_pb2 as pb
from registry.service import Registry
from resolver.auth import Authenticator
from resolver.errors import abort
from resolver.pb import changes_pb2_grpc
from resolver.services.convert import change_to_pb

POLL_SECONDS = 1.0
"""How often a waiting stream re-checks that its client is still there."""
BATCH = 500
"""Changes scanned per step, and the most one response message carries."""


class ChangeFeedServicer(changes_pb2_grpc.ChangeFeedServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator) -> None:
        self.registry = registry
        self.auth = auth

    def _prefix(self, request: pb.WatchChangesRequest, context: grpc.ServicerContext) -> str:
        principal = self.auth.principal(context)
        prefix = request.prefix
        if prefix:
            parse_prefix(prefix, "prefix")
        if principal.role is Role.ENTERPRISE:
            if not prefix:
                return principal.prefix
            self.registry.reader_check(principal, Identifier(prefix, "x"))
        return prefix

    def WatchChanges(
        self, request: pb.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchChangesResponse]:
        """Stream changes after the cursor, then live ones; ends only by the client cancelling,
        by an error (FAILED_PRECONDITION CHANGE_FEED_CURSOR_EXPIRED when the cursor fell behind
        the retained window) or by the node stopping (UNAVAILABLE: reconnect with the cursor)."""
        try:
            prefix = self._prefix(request, context)
            log = self.registry.audit
            cursor = log.read_head()[0] if request.from_now else request.after_sequence
            while context.is_active():
                if log.closed:
                    raise Unavailable("the node is stopping; reconnect with your cursor")
                changes, scanned = log.changes(cursor, BATCH, prefix)
                if scanned == cursor:
                    log.wait(cursor, POLL_SECONDS)
                    continue
                cursor = scanned
                if changes:
                    yield pb.WatchChangesResponse(changes=[change_to_pb(c) for c in changes], cursor=cursor)
        except Exception as exc:
            abort(context, exc)
