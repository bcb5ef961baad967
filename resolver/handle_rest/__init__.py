"""A Handle.Net v9 compatible REST API served by the node itself.

Same store, cache and authorization rules as the gRPC listeners (everything goes through
:class:`registry.service.Registry`). Modules:

- :mod:`.codec`: idnode records <-> Handle JSON (``{responseCode, handle, values: [...]}``);
- :mod:`.errors`: the one table from domain errors to (HTTP status, Handle responseCode);
- :mod:`.auth`: client certificates and HTTP Basic (``300:PREFIX/admin``, scrypt-hashed passwords);
- :mod:`.app`: the routes, sans I/O;
- :mod:`.protocol`: the HTTP/1.1 server (``asyncio.Protocol`` + ``httptools`` on ``uvloop``).
"""

from resolver.handle_rest.protocol import HandleRestServer

__all__ = ["HandleRestServer"]
