"""Who may do what at the gateway's own API: one table, action -> roles, read by the code and
by the auth-matrix test. The services decide for their own resources (their permissions
tables); the gateway only passes their calls on, except a read-only token's writes, which it
refuses itself (no service ever sees them)."""

from __future__ import annotations

from shared.auth import TOKEN_ROLES, Identity
from shared.errors import Forbidden
from shared.i18n import _

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "events.read": TOKEN_ROLES,
    "events.ingest": ("service",),  # a service's outbox relay
    "webhooks.read": ("admin", "integration"),
    "webhooks.write": ("admin", "integration"),
    "webhooks.all": ("admin",),  # every subscription, not only the ones it made
}
# The only methods a read-only token may call. Subscribing a webhook is a write like any other
# (deliveries go where it says): a read-only integration follows `GET /events` instead.
READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")


def may(identity: Identity, action: str) -> bool:
    return identity.role in PERMISSIONS[action]


def require(identity: Identity, action: str) -> None:
    """Forbidden (403) unless the identity's role may do `action`."""
    identity.require(*PERMISSIONS[action])


def require_method(identity: Identity, method: str) -> None:
    """Forbidden (403) for a read-only token's write, whatever the role would allow."""
    if identity.read_only and method.upper() not in READ_ONLY_METHODS:
        raise Forbidden(_("this token is read-only: it may only read (%(method)s refused)",
                          method=method.upper()))
