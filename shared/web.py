"""The Flask glue every service shares: request ids, signed identity, health, metrics, and
idempotent commands run in one unit of work."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import flask_smorest
from flask import Flask, Response, current_app, g, request
from marshmallow import Schema
from sqlalchemy import Insert, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.routing import IntegerConverter

from shared import auth, i18n
from shared.answers import PENDING, KeptAnswer, KeyTaken
from shared.config import Settings
from shared.db import Database
from shared.errors import (
    Conflict,
    EmsupplyError,
    InvalidInput,
    problem,
    register_error_handlers,
)
from shared.i18n import _

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

    def arguments(self, schema, *, location: str = "json", required: bool = True,
                  **kwargs) -> Callable[[Callable], Callable]:
        """flask-smorest's, and a body the document calls required is: a request without one
        is 422, even when every field of the schema is optional (a PATCH that sends nothing)."""
        parse = super().arguments(schema, location=location, required=required, **kwargs)
        if location != "json" or not required:
            return parse

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def with_body(*args, **kwargs):  # after parsing: missing fields are named first
                if not request.get_data(cache=True):
                    raise InvalidInput(_("this request needs a JSON body"),
                                       errors={"json": [_("a body is required")]})
                return view(*args, **kwargs)
            return parse(with_body)
        return decorator

    def command(self, schema: type[Schema] | Schema, status: int = 201, *,
                transaction: bool = True, keeps_answer: bool = False
                ) -> Callable[[Callable], Callable]:
        """Declare a write once: `status` and `schema` both document the answer (OpenAPI) and
        make it (`run_command`, which also owns the Idempotency-Key).

        The view does the work and only that: with `transaction` it is called as
        `view(self, session, identity, *arguments)` inside one unit of work; without, as
        `view(self, identity, *arguments)`, for a command that keeps its own transactions;
        with `keeps_answer` too, as `view(self, identity, *arguments, kept=...)`, `kept` being
        the request's `KeptAnswer` (or None) for the command's own transactions to claim and
        answer (`shared.answers`).
        """
        dumper = schema() if isinstance(schema, type) else schema

        def decorator(view: Callable) -> Callable:
            @functools.wraps(view)
            def command_view(instance, *args, **kwargs):
                if transaction:
                    def work(session, identity):
                        return view(instance, session, identity, *args, **kwargs)
                elif keeps_answer:
                    def work(identity, kept=None):
                        return view(instance, identity, *args, kept=kept, **kwargs)
                else:
                    def work(identity):
                        return view(instance, identity, *args, **kwargs)
                return run_command(work, dumper, status, transaction=transaction,
                                   keeps_answer=keeps_answer)

            return self.response(status, dumper)(command_view)

        return decorator


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
    i18n.install(app)
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
            g.nonce = request.headers[auth.H_NONCE]  # only once verified: it keys replays

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
        """Ready when every check passes. A check may answer a report (the gateway: each
        instance of a service), shown under `checks`, failed or not (its exception's
        `report`)."""
        failures, reports = {}, {}
        for check in (ctx.db.ping, *ctx.checks):
            name = getattr(check, "__name__", "check")
            try:
                report = check()
            except Exception as exc:
                failures[name] = str(exc)
                report = getattr(exc, "report", None)
            if report is not None:
                reports[name] = report
        answer = {"status": "unavailable", "failures": failures} if failures else \
            {"status": "ready"}
        if reports:
            answer["checks"] = reports
        return (answer, 503) if failures else answer

    @app.get("/metrics")
    def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def json_response(body: Any, status: int) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json")


def run_command(work: Callable[..., Any], schema: Schema, status: int = 201, *,
                transaction: bool = True, keeps_answer: bool = False) -> Response:
    """Run one write and answer `schema.dump(result)` with `status`; own its Idempotency-Key.

    With `transaction`, `work(session, identity)` runs in one unit of work, and the key and the
    answer are written in the same transaction, after the change: the first attempt to commit
    wins; any other attempt with that key (a concurrent one, which waits on the first's row
    locks, or a later retry) finds the key taken, rolls its own work back and answers the
    stored response. Nothing is read before the work, so a first attempt costs one INSERT more
    than no key. Without `transaction` (a command that calls another service between its own
    transactions, like a plan and its hold), `work(identity)` runs after the key is claimed, so
    a concurrent copy is told to retry instead of doing the work twice; a claim left by a
    process that died is taken over after `STALE_CLAIM_S`. With `keeps_answer` too,
    `work(identity, kept)` claims the key in its first write's transaction and keeps its
    answer in its last's (`shared.answers.KeptAnswer`): a concurrent copy then finds the key
    taken at its first write and is told to retry; what the work did not keep, this keeps.

    A refusal (any 4xx) is kept as the answer too, so that a retry always replays what the
    first attempt answered; a failure of ours or of another service (5xx) is not, and a retry
    runs the command again. The same key with another body is 422.

    A signed call without a key is keyed by its nonce (`sig:<nonce>`, not shown to the caller):
    the same signed call sent again within its signature's life is answered, not counted again.
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        return _keyed(work, schema, status, transaction, key, keeps_answer)
    nonce = g.get("nonce")
    if nonce is not None:
        response = _keyed(work, schema, status, transaction, SIGNED_KEY_PREFIX + nonce,
                          keeps_answer)
        response.headers.pop("Idempotency-Key", None)
        return response
    identity = current_identity()
    if not transaction:
        return json_response(schema.dump(work(identity)), status)
    with context().db.unit_of_work() as session:
        body = schema.dump(work(session, identity))
    return json_response(body, status)


# The implicit key of a signed write that carries no Idempotency-Key (see run_command).
SIGNED_KEY_PREFIX = "sig:"
# How long answers are kept: a signed call's for as long as its signature could be sent again
# (at most an hour, EMSUPPLY_SIGNATURE_MAX_AGE's ceiling, plus margin); a client's key for a week,
# longer than any client retries.
SIGNED_ANSWERS_KEPT_S = 2 * 3600
KEYED_ANSWERS_KEPT_S = 7 * 86400


def forget_old_answers(db: Database, table: Table, now: datetime | None = None) -> int:
    """Delete the answers nobody can ask for again (a background chore): without it every
    signed write would leave its row for ever. Answers how many went."""
    now = now or datetime.now(UTC)
    signed = table.c.key.startswith(SIGNED_KEY_PREFIX, autoescape=True)
    with db.unit_of_work() as session:
        gone = session.execute(delete(table).where(
            ((table.c.created_at < now - timedelta(seconds=SIGNED_ANSWERS_KEPT_S)) & signed)
            | (table.c.created_at < now - timedelta(seconds=KEYED_ANSWERS_KEPT_S))))
    return gone.rowcount or 0


def _keyed(work: Callable[..., Any], schema: Schema, status: int, transaction: bool,
           key: str, keeps_answer: bool = False) -> Response:
    ctx = context()
    identity = current_identity()
    fingerprint = _fingerprint(identity)
    if not transaction and keeps_answer:
        return _kept_by_work(ctx, key, fingerprint, lambda kept: work(identity, kept), schema,
                             status)
    if not transaction:
        return _claimed(ctx, key, fingerprint, lambda: _dumps(schema.dump(work(identity))),
                        status)
    try:
        with ctx.db.unit_of_work() as session:
            text = _dumps(schema.dump(work(session, identity)))
            try:
                _add_answer(session, ctx.idempotency, key, fingerprint, status, text)
            except IntegrityError:
                raise KeyTaken(key) from None
    except KeyTaken:
        return _replayed(ctx, key, fingerprint)
    except EmsupplyError as exc:
        if exc.status >= 500:
            raise
        return _keep_refusal(ctx, key, fingerprint, exc)
    return _answer(text, status, key)


# A claim older than this belongs to a process that died mid-command (a plan takes seconds).
STALE_CLAIM_S = 120


def _claimed(ctx: ServiceContext, key: str, fingerprint: str, work: Callable[[], str],
             status: int) -> Response:
    table = ctx.idempotency
    now = datetime.now(UTC)
    try:
        with ctx.db.unit_of_work() as session:
            _add_answer(session, table, key, fingerprint, PENDING, "", now)
    except IntegrityError:
        replay = _stored(ctx, key, fingerprint)
        if replay is not None:
            return replay
        with ctx.db.unit_of_work() as session:  # still pending: take it over only if stale
            taken = session.execute(
                update(table).where(table.c.key == key, table.c.status == PENDING,
                                    table.c.created_at < now - timedelta(seconds=STALE_CLAIM_S))
                .values(created_at=now)).rowcount
        if not taken:
            raise _busy() from None
    try:
        text, code = work(), status
    except EmsupplyError as exc:
        if exc.status >= 500:
            _forget(ctx, key)
            raise
        text, code = _dumps(_problem_body(exc)), exc.status
    except BaseException:
        _forget(ctx, key)
        raise
    _keep(ctx, key, code, text)
    return _answer(text, code, key)


def _kept_by_work(ctx: ServiceContext, key: str, fingerprint: str,
                  work: Callable[[KeptAnswer | None], Any], schema: Schema,
                  status: int) -> Response:
    """`work(kept)` claims the key and keeps its answer in its own transactions; what it did
    not keep is kept here, as `_claimed` would. A key another request holds is answered as
    `_claimed` answers it: replayed, refused while under way, or taken over when stale (the
    work then runs with its key claimed here)."""
    kept = KeptAnswer(ctx.idempotency, key, fingerprint, status,
                      lambda result: _dumps(schema.dump(result)))
    try:
        result = work(kept)
    except KeyTaken:
        return _claimed(ctx, key, fingerprint, lambda: _dumps(schema.dump(work(None))),
                        status)
    except EmsupplyError as exc:
        if exc.status >= 500:
            if kept.claimed:
                _forget(ctx, key)
            raise
        text = _dumps(_problem_body(exc))
        if kept.claimed and _keep(ctx, key, exc.status, text):
            return _answer(text, exc.status, key, exc.headers)
        return _keep_refusal(ctx, key, fingerprint, exc)
    except BaseException:
        if kept.claimed:
            _forget(ctx, key)
        raise
    if kept.text is not None:
        return _answer(kept.text, status, key)
    text = _dumps(schema.dump(result))
    if (kept.claimed and _keep(ctx, key, status, text)) or \
            _new_answer(ctx, key, fingerprint, status, text):
        return _answer(text, status, key)
    return _replayed(ctx, key, fingerprint)


def _keep(ctx: ServiceContext, key: str, status: int, text: str) -> bool:
    """The answer kept on this request's pending claim; False when the claim is not there
    (the transaction that wrote it rolled back)."""
    table = ctx.idempotency
    with ctx.db.unit_of_work() as session:
        return bool(session.execute(update(table).where(table.c.key == key,
                                                        table.c.status == PENDING)
                                    .values(status=status, body=text)).rowcount)


def _new_answer(ctx: ServiceContext, key: str, fingerprint: str, status: int,
                text: str) -> bool:
    """An answer kept for a key never claimed; False when another request has the key."""
    try:
        with ctx.db.unit_of_work() as session:
            _add_answer(session, ctx.idempotency, key, fingerprint, status, text)
    except IntegrityError:
        return False
    return True


def _add_answer(session: Session, table: Table, key: str, fingerprint: str, status: int,
                body: str, at: datetime | None = None) -> None:
    """The one INSERT of a key's row (a claim or an answer); IntegrityError when it is taken."""
    session.execute(_answer_insert(table), {"key": key, "fingerprint": fingerprint,
                                            "status": status, "body": body,
                                            "created_at": at or datetime.now(UTC)})


@functools.cache
def _answer_insert(table: Table) -> Insert:
    """Built once: built on each call (its values, then its cache key) it cost a keeper's
    movement about a tenth of the inventory's CPU."""
    return insert(table)


def _replayed(ctx: ServiceContext, key: str, fingerprint: str) -> Response:
    """The answer kept for `key`, or 409 while the request that holds it is under way."""
    replay = _stored(ctx, key, fingerprint)
    if replay is None:
        raise _busy()
    return replay


def _busy() -> Conflict:
    return Conflict("this Idempotency-Key is being used by another request; retry",
                    headers={"Retry-After": "1"})


def _forget(ctx: ServiceContext, key: str) -> None:
    """Free a claim whose command failed on our side, so that a retry runs it again."""
    table = ctx.idempotency
    with contextlib.suppress(Exception), ctx.db.unit_of_work() as session:
        session.execute(delete(table).where(table.c.key == key, table.c.status == PENDING))


def _keep_refusal(ctx: ServiceContext, key: str, fingerprint: str,
                  exc: EmsupplyError) -> Response:
    """Keep a 4xx as the key's answer, unless another attempt with the key answered first."""
    text = _dumps(_problem_body(exc))
    if _new_answer(ctx, key, fingerprint, exc.status, text):
        return _answer(text, exc.status, key, exc.headers)
    replay = _stored(ctx, key, fingerprint)
    if replay is not None:
        return replay
    raise exc


def _problem_body(exc: EmsupplyError) -> dict[str, Any]:
    body = problem(exc.status, exc.title, exc.detail, slug=exc.slug, errors=exc.errors,
                   extra=exc.extra)
    body["request_id"] = g.get("request_id")
    return body


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _answer(text: str, status: int, key: str, headers: dict[str, str] | None = None,
            replayed: bool = False) -> Response:
    mimetype = "application/problem+json" if status >= 400 else "application/json"
    response = Response(text, status=status, mimetype=mimetype)
    response.headers["Idempotency-Key"] = key
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _fingerprint(identity: auth.Identity) -> str:
    raw = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON (or not readable as JSON): the bytes as sent
        canonical = raw.decode("utf-8", "replace")
    material = "\n".join((identity.actor, request.method, request.path, canonical))
    return hashlib.sha256(material.encode()).hexdigest()


def _stored(ctx: ServiceContext, key: str, fingerprint: str) -> Response | None:
    """The answer kept for `key`, or None while there is none (no row, or a pending claim)."""
    table = ctx.idempotency
    with ctx.db.reading() as session:
        row = session.execute(select(table.c.fingerprint, table.c.status, table.c.body)
                              .where(table.c.key == key)).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise InvalidInput("this Idempotency-Key was already used with another request body",
                           errors={"Idempotency-Key": ["already used with another request"]})
    if row.status == PENDING:
        return None
    return _answer(row.body, row.status, key, replayed=True)
