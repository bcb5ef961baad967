"""The one administrator check every administrative call of the registry makes."""

from __future__ import annotations

from registry.errors import PermissionDenied
from registry.model import Principal, Role


def require_admin(principal: Principal, what: str = "this call") -> None:
    """PERMISSION_DENIED ``ADMIN_ONLY`` unless ``principal`` is the node administrator; ``what``
    names the thing in the message ("the audit trail needs ...")."""
    if principal.role is not Role.ADMIN:
        raise PermissionDenied(f"{what} needs the node administrator's credential", reason="ADMIN_ONLY")
