"""The Flask glue every service shares: request ids, signed identity, health, metrics, and
idempotent commands run in one unit of work."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import flask_smorest
from flask import Flask, Response, current_app, g, request
from marshmallow import Schema
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.routing import IntegerConverter

from shared import auth
from shared.config import Settings
from shared.db import Database
from shared.errors import Conflict, EmsupplyError, InvalidInput, register_error_handlers

log = logging.getLogger("emsupply.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}\Z")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


@dataclass
class ServiceContext:
    settings: Settings
    db: Database
    idempotency: Table
    checks: tuple[Callable[[], None], ...] = ()


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, strict about bodies: a body that is not JSON is 415 instead of
    being read as no body at all, and JSON that Python cannot read (nested thousands deep, a
    5,000-digit number) is 400 instead of an unhandled error."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise UnsupportedMediaType("the body must be JSON (Content-Type: "
                                           "application/json)")
            return webargs_core.missing
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise  # webargs answers these itself (an empty body is no body)
        except (ValueError, RecursionError) as exc:
            self._handle_invalid_json_error(exc, req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        exc = BadRequest(f"the body is not valid JSON ({error.__class__.__name__})")
        exc.data = {"messages": {"json": ["Invalid JSON body."]}}
        raise exc


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict body parser; services declare routes on it."""

    ARGUMENTS_PARSER = JsonBodyParser()


class IdConverter(IntegerConverter):
    """`<int:...>` path ids that a database can hold: a larger number matches no route (404)
    instead of overflowing the database driver."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def new_app(import_name: str) -> Flask:
    """A Flask app as every service makes it: bounded integer ids in paths."""
    app = Flask(import_name)
    app.url_map.converters["int"] = IdConverter
    return app


def context() -> ServiceContext:
    return current_app.extensions["emsupply"]


def current_identity() -> auth.Identity:
    return g.identity


def install(app: Flask, ctx: ServiceContext, *, authenticate: bool = True) -> None:
    """Wire request ids, access logs, problem+json, signed identity and health into `app`."""
    app.extensions["emsupply"] = ctx
    register_error_handlers(app)

    @app.before_request
    def start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.match(key):  # one check for every command
            raise InvalidInput("Idempotency-Key must be 1 to 200 printable ASCII characters",
                               errors={"Idempotency-Key": ["1 to 200 printable ASCII characters"]})
        if authenticate and request.path.startswith("/api/") and not request.path.endswith(
                "/openapi.json"):
            g.identity = auth.verify(ctx.settings.secret, request.headers, request.method,
                                     request.full_path.rstrip("?"), request.get_data(cache=True),
                                     ctx.settings.signature_max_age_s)

    @app.after_request
    def finish(response: Response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if request.path not in OPEN_PATHS:
            ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)
            log.info("%s %s %s", request.method, request.path, response.status_code,
                     extra={"method": request.method, "path": request.path,
                            "status": response.status_code, "ms": ms})
        return response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        failures = {}
        for check in (ctx.db.ping, *ctx.checks):
            try:
                check()
            except Exception as exc:
                failures[getattr(check, "__name__", "check")] = str(exc)
        if failures:
            return {"status": "unavailable", "failures": failures}, 503
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def json_response(body: Any, status: int) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json")


class _KeyTaken(Exception):
    pass


def run_command(fn: Callable[..., Any], *args: Any, schema: Schema, status: int = 201) -> Response:
    """Run `fn(session, identity, *args)` in one unit of work and answer `schema.dump(result)`.

    With an `Idempotency-Key`, the key and the answer are written in the same transaction as the
    change, after it: the first attempt to commit wins, and any other attempt with that key (a
    concurrent one, which waits on the first's row locks, or a later retry) finds the key taken,
    rolls its own work back and answers the stored response; a retry that fails (the stock it
    issued is gone) answers the stored response too. The same key with another body is 422.
    Nothing is read before the work, so a first attempt costs one INSERT more than no key.
    """
    ctx = context()
    identity = current_identity()
    key = request.headers.get("Idempotency-Key")
    if key is None:
        with ctx.db.unit_of_work() as session:
            body = schema.dump(fn(session, identity, *args))
        return json_response(body, status)
    key, fingerprint = idempotency_request(identity)
    try:
        with ctx.db.unit_of_work() as session:
            text = json.dumps(schema.dump(fn(session, identity, *args)), ensure_ascii=False,
                              separators=(",", ":"))
            try:
                session.execute(insert(ctx.idempotency).values(
                    key=key, fingerprint=fingerprint, status=status, body=text,
                    created_at=datetime.now(UTC)))
            except IntegrityError:
                raise _KeyTaken() from None
    except (_KeyTaken, EmsupplyError) as exc:
        replay = _stored(ctx, key, fingerprint)
        if replay is not None:
            return replay
        if isinstance(exc, _KeyTaken):
            raise Conflict("this Idempotency-Key is being used by another request; retry") from None
        raise
    response = Response(text, status=status, mimetype="application/json")
    response.headers["Idempotency-Key"] = key
    return response


def idempotency_request(identity: auth.Identity) -> tuple[str | None, str]:
    """The request's Idempotency-Key (its form is checked for every request in `install`) and
    the fingerprint of what it asks, for commands that keep their own record of the key."""
    return request.headers.get("Idempotency-Key"), _fingerprint(identity)


def _fingerprint(identity: auth.Identity) -> str:
    raw = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON (or not readable as JSON): the bytes as sent
        canonical = raw.decode("utf-8", "replace")
    material = "\n".join((identity.actor, request.method, request.path, canonical))
    return hashlib.sha256(material.encode()).hexdigest()


def _stored(ctx: ServiceContext, key: str, fingerprint: str) -> Response | None:
    table = ctx.idempotency
    with ctx.db.reading() as session:
        row = session.execute(select(table.c.fingerprint, table.c.status, table.c.body)
                              .where(table.c.key == key)).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise InvalidInput("this Idempotency-Key was already used with another request body",
                           errors={"Idempotency-Key": ["already used with another request"]})
    response = Response(row.body, status=row.status, mimetype="application/json")
    response.headers["Idempotency-Key"] = key
    response.headers["Idempotent-Replayed"] = "true"
    return response
