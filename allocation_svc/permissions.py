"""Who may do what in the allocation service: one table, action -> roles, read by the code and
by the auth-matrix test. Reads are open to every role; only writes are listed."""

from __future__ import annotations

from shared.auth import Identity

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "roads.write": ("admin",),
    "roads.report": ("admin", "commander", "integration"),
    "incidents.write": ("admin", "commander", "integration"),
    "plans.write": ("admin", "commander", "integration"),
    "replenishment.write": ("admin", "commander"),
}


def require(identity: Identity, action: str) -> None:
    """Forbidden (403) unless the identity's role may do `action`."""
    identity.require(*PERMISSIONS[action])
