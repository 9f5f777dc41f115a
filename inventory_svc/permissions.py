"""Who may change what in the inventory: one table, action -> roles, read by the code and by the
auth-matrix test. Reads are open to every signed caller and are not listed.

A keeper, and a commander whose token names a county (`Identity.bound`), act only on the
warehouses of the subtrees named on the token, so an action on a warehouse names that warehouse
and the scope is checked too; an action that names none is refused them. A keeper also reads
the lots of its shelves (what expires when) in its scope only: its rotation list is its own,
not the prefecture's. A county commander reads everywhere, as every other role does.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import ColumnElement, false, or_

from shared.auth import Identity
from shared.errors import Forbidden
from shared.i18n import _

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "warehouses.write": ("admin",),
    "items.write": ("admin",),
    "levels.write": ("admin", "commander"),
    "stock.move": ("admin", "keeper"),
    "stocktake": ("admin", "keeper"),
    "stock.write_off": ("admin", "keeper"),
    "transfers.create": ("admin", "commander", "service", "keeper"),
    "transfers.receive": ("admin", "keeper"),
    "reservations.create": ("admin", "service", "integration"),
    "reservations.commit": ("admin", "service", "integration"),
    "reservations.release": ("admin", "service", "integration"),
}
SCOPED_ROLES = ("keeper",)  # bound for reads of lots too, not only for changes


class Placed(Protocol):
    """A warehouse, or what a movement knows of one: its code and its path in the tree."""

    @property
    def code(self) -> str: ...

    @property
    def path(self) -> str: ...


def require(identity: Identity, action: str, warehouse: Placed | None = None) -> None:
    """Forbidden unless `identity`'s role may do `action`, and, for a bound identity, unless
    `warehouse` is inside its scope (naming no warehouse is refused)."""
    roles = PERMISSIONS[action]
    if identity.role not in roles:
        raise Forbidden(f"role {identity.role!r} may not do {action} "
                        f"(allowed: {', '.join(roles)})")
    if identity.bound:
        _require_inside(identity, warehouse)


def require_sight(identity: Identity, warehouse: Placed | None) -> None:
    """Forbidden for a keeper unless `warehouse` is inside its scope (no warehouse: refused)."""
    if identity.role in SCOPED_ROLES:
        _require_inside(identity, warehouse)


def _require_inside(identity: Identity, warehouse: Placed | None) -> None:
    if warehouse is None:
        raise Forbidden(_("a call that names no warehouse is outside this %(role)s's scope",
                          role=identity.role))
    if not any(f"/{code}/" in warehouse.path for code in identity.scope):
        raise Forbidden(_("warehouse %(code)s is outside this %(role)s's scope",
                          code=warehouse.code, role=identity.role))


def scope_filter(identity: Identity, path: ColumnElement[str]) -> ColumnElement[bool] | None:
    """The condition on a warehouse `path` column that keeps a read in a keeper's scope, or
    None for a role that sees everywhere."""
    if identity.role not in SCOPED_ROLES:
        return None
    return or_(false(), *(path.contains(f"/{code}/", autoescape=True)
                          for code in identity.scope))
