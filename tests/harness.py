"""What the tests of every layer share: the suite secret, one test caller (signed like the
gateway for a service, or with a bearer token for the gateway) and migrated databases."""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import create_engine, text

from shared import auth
from shared.db import Database
from shared.migrate import upgrade

SECRET = "test-secret-0123456789abcdef"


class Client:
    """A test client that sends JSON with the headers that say who is calling."""

    def __init__(self, client):
        self.client = client

    def credentials(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return {}

    def call(self, method: str, path: str, json_body=None, headers=None, raw: bytes | None = None):
        body = raw if raw is not None else (b"" if json_body is None else
                                            json.dumps(json_body).encode())
        all_headers = {**self.credentials(method, path, body), **(headers or {})}
        if body:
            all_headers.setdefault("Content-Type", "application/json")
        return self.client.open(path, method=method, data=body, headers=all_headers)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.call("POST", path, json_body, **kw)

    def put(self, path, json_body=None, **kw):
        return self.call("PUT", path, json_body, **kw)

    def patch(self, path, json_body=None, **kw):
        return self.call("PATCH", path, json_body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


class Caller(Client):
    """A service called directly, with the identity headers signed the way the gateway
    signs them (an admin unless `as_` says otherwise)."""

    def __init__(self, client, secret: str = SECRET, identity: auth.Identity | None = None):
        super().__init__(client)
        self.secret = secret
        self.identity = identity or auth.Identity("tester", "admin")

    def as_(self, role: str, *scope: str, actor: str | None = None) -> Caller:
        return Caller(self.client, self.secret,
                      auth.Identity(actor or f"{role}-1", role, tuple(scope)))

    def credentials(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return auth.sign(self.secret, self.identity, method, path, body)


class Bearer(Client):
    """The gateway called with `Authorization: Bearer <token>` (no header when None)."""

    def __init__(self, client, token: str | None):
        super().__init__(client)
        self.token = token

    def credentials(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}


def fresh_pg_schema(url: str, package: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    upgrade(package, url)


def migrated(package: str, url: str) -> Iterator[Database]:
    """`package`'s tables on `url` (on PostgreSQL in a fresh schema), for a fixture to yield
    from; the engine is disposed at the end."""
    if url.startswith("postgresql"):
        fresh_pg_schema(url, package)
    else:
        upgrade(package, url)
    database = Database(url)
    yield database
    database.dispose()
