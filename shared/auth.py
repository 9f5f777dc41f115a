"""The identity the gateway vouches for, signed so that a service can trust it.

The gateway (or a service calling another) sends who the caller is in `X-Emsupply-*` headers with
an HMAC-SHA256 of `EMSUPPLY_SECRET` over the identity, a timestamp, the method, the path with its
query and the body's digest. A signature is only good for that one call and for a short while, so
it can be neither replayed on another call nor much later. Services check it and then decide role
and scope themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field

from shared.errors import Forbidden, Unauthenticated

ROLES = ("admin", "commander", "keeper", "integration", "viewer", "service")

H_ACTOR = "X-Emsupply-Actor"
H_ROLE = "X-Emsupply-Role"
H_SCOPE = "X-Emsupply-Scope"
H_TIMESTAMP = "X-Emsupply-Timestamp"
H_SIGNATURE = "X-Emsupply-Identity"
IDENTITY_HEADERS = (H_ACTOR, H_ROLE, H_SCOPE, H_TIMESTAMP, H_SIGNATURE)


@dataclass(frozen=True)
class Identity:
    actor: str
    role: str
    scope: tuple[str, ...] = field(default=())

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this (allowed: {', '.join(roles)})")


def _message(identity: Identity, timestamp: str, method: str, path: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body or b"").hexdigest()
    parts = (identity.actor, identity.role, ",".join(identity.scope), timestamp,
             method.upper(), path, digest)
    return "\n".join(parts).encode()


def sign(secret: str, identity: Identity, method: str, path: str, body: bytes = b"",
         now: float | None = None) -> dict[str, str]:
    """Headers that carry `identity` for one call of `method` on `path` (with its query)."""
    if identity.role not in ROLES:
        raise ValueError(f"unknown role {identity.role!r}")
    timestamp = str(int(now if now is not None else time.time()))
    mac = hmac.new(secret.encode(), _message(identity, timestamp, method, path, body),
                   hashlib.sha256).hexdigest()
    return {
        H_ACTOR: identity.actor,
        H_ROLE: identity.role,
        H_SCOPE: ",".join(identity.scope),
        H_TIMESTAMP: timestamp,
        H_SIGNATURE: mac,
    }


def verify(secret: str, headers, method: str, path: str, body: bytes, max_age_s: int = 60,
           now: float | None = None) -> Identity:
    """The identity of a signed call, or Unauthenticated when it is missing, stale or forged."""
    actor, role, scope = headers.get(H_ACTOR), headers.get(H_ROLE), headers.get(H_SCOPE, "")
    timestamp, mac = headers.get(H_TIMESTAMP), headers.get(H_SIGNATURE)
    if not (actor and role and timestamp and mac):
        raise Unauthenticated("this service takes only calls signed by the gateway; "
                              "call it through the gateway with a bearer token")
    try:
        age = (now if now is not None else time.time()) - int(timestamp)
    except ValueError:
        raise Unauthenticated("the identity timestamp is not a number") from None
    if abs(age) > max_age_s:
        raise Unauthenticated("the identity signature is stale")
    if role not in ROLES:
        raise Unauthenticated(f"unknown role {role!r}")
    identity = Identity(actor, role, tuple(s for s in scope.split(",") if s))
    expected = hmac.new(secret.encode(), _message(identity, timestamp, method, path, body),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        raise Unauthenticated("the identity signature does not match this call")
    return identity
