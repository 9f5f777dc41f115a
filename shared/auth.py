"""The identity the gateway vouches for, signed so that a service can trust it.

The gateway (or a service calling another) sends who the caller is in `X-Emsupply-*` headers with
an HMAC-SHA256 of `EMSUPPLY_SECRET` over the identity, a timestamp, a random nonce, the method,
the path with its query and the body's digest. A signature is only good for that one call and for
a short while (never ahead of the clock by more than `FUTURE_SKEW_S`); within that while, the
nonce names the call, so that a service can answer a replay of it once (shared.web keys every
write on it). Services check the signature and then decide role and scope themselves.

The actor is a token's name, any text: it travels percent-encoded (UTF-8), because a header is
Latin-1, and the signature covers it in that one canonical form of the decoded text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from shared.errors import Forbidden, Unauthenticated

# The roles a bearer token may carry (people and integrations); every role a signed identity
# may carry adds the services' own, which calls between services use. A `reporter` is a village
# grid worker: it reads, and reports roads near its depots (docs/roles.md).
TOKEN_ROLES = ("admin", "commander", "keeper", "reporter", "integration", "viewer")
ROLES = (*TOKEN_ROLES, "service")
# Roles bound to the warehouses named on their token (and everything below them): a keeper and
# a reporter always; a commander when its token names some (a county commander), else it is
# prefecture-wide. A bound identity changes only what lies inside; reads stay everywhere.
PLACED_ROLES = ("keeper", "reporter")
SCOPABLE_ROLES = (*PLACED_ROLES, "commander")

H_ACTOR = "X-Emsupply-Actor"
H_ROLE = "X-Emsupply-Role"
H_SCOPE = "X-Emsupply-Scope"
H_TIMESTAMP = "X-Emsupply-Timestamp"
H_NONCE = "X-Emsupply-Nonce"
H_SIGNATURE = "X-Emsupply-Identity"
IDENTITY_HEADERS = (H_ACTOR, H_ROLE, H_SCOPE, H_TIMESTAMP, H_NONCE, H_SIGNATURE)

# How far ahead of a service's clock a signature may be dated (clocks of one suite drift little).
FUTURE_SKEW_S = 5
# Printable ASCII but `%` stays as it is in the actor header; anything else is %XX of its UTF-8.
_ACTOR_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9a-f]{32,128}")


@dataclass(frozen=True)
class Identity:
    """Who calls. `read_only` is the gateway's: it refuses such a token's writes itself, so
    the flag is neither signed nor seen by a service."""

    actor: str
    role: str
    scope: tuple[str, ...] = field(default=())
    read_only: bool = False

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this (allowed: {', '.join(roles)})")

    @property
    def bound(self) -> bool:
        """Changes only what lies inside `scope` (a keeper with no scope is bound to nothing,
        never free)."""
        return self.role in PLACED_ROLES or (self.role in SCOPABLE_ROLES and bool(self.scope))


def encode_actor(actor: str) -> str:
    """The actor as a header can carry it: Latin-1-safe, no control characters."""
    return quote(actor, safe=_ACTOR_SAFE)


def _message(identity: Identity, timestamp: str, nonce: str, method: str, path: str,
             body: bytes) -> bytes:
    digest = hashlib.sha256(body or b"").hexdigest()
    parts = (encode_actor(identity.actor), identity.role, ",".join(identity.scope), timestamp,
             nonce, method.upper(), path, digest)
    return "\n".join(parts).encode()


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, identity: Identity, method: str, path: str, body: bytes = b"",
         now: float | None = None) -> dict[str, str]:
    """Headers that carry `identity` for one call of `method` on `path` (with its query)."""
    if identity.role not in ROLES:
        raise ValueError(f"unknown role {identity.role!r}")
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    return {
        H_ACTOR: encode_actor(identity.actor),
        H_ROLE: identity.role,
        H_SCOPE: ",".join(identity.scope),
        H_TIMESTAMP: timestamp,
        H_NONCE: nonce,
        H_SIGNATURE: _mac(secret, _message(identity, timestamp, nonce, method, path, body)),
    }


def verify(secret: str, headers, method: str, path: str, body: bytes, max_age_s: int = 60,
           now: float | None = None) -> Identity:
    """The identity of a signed call, or Unauthenticated when it is missing, stale, dated in
    the future, without its nonce or forged. The call's nonce is `headers[H_NONCE]`."""
    actor, role, scope = headers.get(H_ACTOR), headers.get(H_ROLE), headers.get(H_SCOPE, "")
    timestamp, mac = headers.get(H_TIMESTAMP), headers.get(H_SIGNATURE)
    nonce = headers.get(H_NONCE)
    if not (actor and role and timestamp and mac):
        raise Unauthenticated("this service takes only calls signed by the gateway; "
                              "call it through the gateway with a bearer token")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthenticated("the identity timestamp is not a number")
    age = (now if now is not None else time.time()) - int(timestamp)
    if age > max_age_s:
        raise Unauthenticated("the identity signature is stale")
    if age < -FUTURE_SKEW_S:
        raise Unauthenticated("the identity timestamp is in the future")
    if not (nonce and _NONCE.fullmatch(nonce)):
        raise Unauthenticated("the identity has no nonce (X-Emsupply-Nonce, 32 or more hex "
                              "digits)")
    if role not in ROLES:
        raise Unauthenticated(f"unknown role {role!r}")
    identity = Identity(unquote(actor), role, tuple(s for s in scope.split(",") if s))
    expected = _mac(secret, _message(identity, timestamp, nonce, method, path, body))
    if not hmac.compare_digest(expected, mac):
        raise Unauthenticated("the identity signature does not match this call")
    return identity
