"""Bearer tokens: made once, shown once, kept only as a SHA-256, checked on every call.

A token is `ems_` followed by 43 URL-safe characters (256 random bits), so a plain SHA-256 is
enough to keep it (no salt or slow hash needed for a secret that was never a password). What a
token maps to is cached in the process for a few seconds, so a call costs no database read; a
revocation takes effect within that time in every process (at once in the one that revoked).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Token
from shared.auth import PLACED_ROLES, SCOPABLE_ROLES, TOKEN_ROLES, Identity
from shared.db import Database
from shared.errors import InvalidInput, NotFound, Unauthenticated
from shared.i18n import _
from shared.schemas import CODE

PREFIX = "ems_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    id: int
    token: str
    identity: Identity


def check_grant(role: str, warehouses: tuple[str, ...], read_only: bool = False) -> None:
    """A grant that makes sense: a keeper's or reporter's token names its warehouses, a
    commander's may (a county commander), no other role's does; only an integration is made
    read-only (a viewer is read-only already)."""
    if role not in TOKEN_ROLES:
        raise InvalidInput(f"unknown role {role!r} (one of: {', '.join(TOKEN_ROLES)})",
                           errors={"role": [f"one of {', '.join(TOKEN_ROLES)}"]})
    if role in PLACED_ROLES and not warehouses:
        raise InvalidInput(_("a %(role)s's token names the warehouses it works at (--warehouse)",
                             role=role), errors={"warehouse": [_("required for this role")]})
    if role not in SCOPABLE_ROLES and warehouses:
        raise InvalidInput(_("only a keeper's, a reporter's or a commander's token is scoped "
                             "to warehouses"), errors={"warehouse": [_("not for this role")]})
    if read_only and role != "integration":
        raise InvalidInput(_("only an integration's token is made read-only"),
                           errors={"read_only": [_("only for an integration")]})
    for code in warehouses:
        try:
            CODE(code)
        except Exception:
            raise InvalidInput(f"{code!r} is not a warehouse code",
                               errors={"warehouse": [f"{code!r} is not a warehouse code"]}
                               ) from None


def actor_of(row: Token) -> str:
    return row.name or f"token-{row.id}"


def identity_of(row: Token) -> Identity:
    return Identity(actor_of(row), row.role, tuple(row.scope or ()), row.read_only)


def create(session: Session, role: str, warehouses: tuple[str, ...] = (),
           name: str | None = None, read_only: bool = False) -> Issued:
    warehouses = tuple(dict.fromkeys(warehouses))
    check_grant(role, warehouses, read_only)
    if name is not None and not 1 <= len(name) <= 120:
        raise InvalidInput("a token name is 1 to 120 characters", errors={"name": ["1 to 120"]})
    token = PREFIX + secrets.token_urlsafe(32)
    row = Token(name=name, role=role, scope=list(warehouses), read_only=read_only,
                hash=digest(token), prefix=token[:10], created_at=datetime.now(UTC))
    session.add(row)
    session.flush()
    return Issued(row.id, token, identity_of(row))


def list_tokens(session: Session, include_revoked: bool = False) -> list[Token]:
    query = select(Token).order_by(Token.id)
    if not include_revoked:
        query = query.where(Token.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke(session: Session, which: str) -> list[Token]:
    """Revoke the token of id `which`, or every live token named `which`."""
    query = select(Token).where(Token.revoked_at.is_(None))
    query = query.where(Token.id == int(which)) if which.isdigit() else query.where(
        Token.name == which)
    rows = list(session.scalars(query))
    if not rows:
        raise NotFound(f"no live token with id or name {which!r}")
    now = datetime.now(UTC)
    for row in rows:
        row.revoked_at = now
    return rows


class TokenStore:
    """Authenticates `Authorization: Bearer ...` against the gateway's database, with a cache."""

    def __init__(self, db: Database, cache_s: float = 5.0):
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Identity | None, int | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> tuple[Identity, int]:
        if not header:
            raise Unauthenticated("send Authorization: Bearer <token>",
                                  headers={"WWW-Authenticate": 'Bearer realm="emsupply"'})
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(PREFIX) or len(token) > 200:
            raise Unauthenticated("the Authorization header must be 'Bearer <token>' with a "
                                  "token made by `emsupply token create`",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        key = digest(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or cached[0] < now:
            with self.db.reading() as session:
                row = session.scalar(select(Token).where(Token.hash == key))
            if row is None or row.revoked_at is not None:
                cached = (now + self.cache_s, None, None)
            else:
                cached = (now + self.cache_s, identity_of(row), row.id)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = cached
        _, identity, token_id = cached
        if identity is None:
            raise Unauthenticated("this token is unknown or revoked",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return identity, token_id

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
