"""Who may do what at the gateway's own API: one table, action -> roles, read by the code and
by the auth-matrix test. The services decide for their own resources (their permissions
tables); the gateway only passes their calls on."""

from __future__ import annotations

from shared.auth import TOKEN_ROLES, Identity

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "events.read": TOKEN_ROLES,
    "events.ingest": ("service",),  # a service's outbox relay
    "webhooks.read": ("admin", "integration"),
    "webhooks.write": ("admin", "integration"),
    "webhooks.all": ("admin",),  # every subscription, not only the ones it made
}


def may(identity: Identity, action: str) -> bool:
    return identity.role in PERMISSIONS[action]


def require(identity: Identity, action: str) -> None:
    """Forbidden (403) unless the identity's role may do `action`."""
    identity.require(*PERMISSIONS[action])
