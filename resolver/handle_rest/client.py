"""A minimal client of the node's own Handle REST endpoints, for the CLI (standard library only)."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from urllib.parse import quote, urlsplit

from registry.errors import IdnodeError


def set_password(rest_url: str, prefix: str, password: str, credentials: Path) -> str:
    """``PUT /idnode/v1/passwords/PREFIX`` over HTTPS with the client credential in
    ``credentials`` (cert.pem, key.pem, ca.pem); returns the Basic user name ``300:PREFIX/admin``.
    Raises IdnodeError with the node's message on failure."""
    url = urlsplit(rest_url)
    if url.scheme != "https" or not url.hostname:
        raise IdnodeError(f"--rest must be an https:// URL, not {rest_url!r}")
    ctx = ssl.create_default_context(cafile=str(credentials / "ca.pem"))
    ctx.load_cert_chain(credentials / "cert.pem", credentials / "key.pem")
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx, timeout=30)
    try:
        conn.request(
            "PUT",
            f"/idnode/v1/passwords/{quote(prefix, safe='')}",
            body=json.dumps({"password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        doc = json.loads(response.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise IdnodeError(f"cannot reach the Handle REST listener at {rest_url}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise IdnodeError(f"{response.status}: {doc.get('message', 'failed')}")
    return str(doc["username"])
