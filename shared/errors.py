"""One error hierarchy for the whole suite, and the one place it becomes RFC 9457 problem+json.

Domain modules raise these (they import nothing of Flask); `register_error_handlers` maps them,
and every other HTTP failure, to the same problem shape.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.i18n import _, join, localize

PROBLEM_BASE = "https://emsupply.example/problems/"
log = logging.getLogger(__name__)
# What a client is told to wait when the database is down or saturated (Retry-After, seconds).
DATABASE_RETRY_AFTER_S = 5


class EmsupplyError(Exception):
    status = 400
    slug = "bad-request"
    title = _("Bad request")

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}


class InvalidInput(EmsupplyError):
    status, slug, title = 422, "validation", _("Invalid input")


class NotFound(EmsupplyError):
    status, slug, title = 404, "not-found", _("Not found")


class Conflict(EmsupplyError):
    status, slug, title = 409, "conflict", _("Conflict")


class Unauthenticated(EmsupplyError):
    status, slug, title = 401, "unauthenticated", _("Authentication required")


class Forbidden(EmsupplyError):
    status, slug, title = 403, "forbidden", _("Not allowed")


class Unavailable(EmsupplyError):
    status, slug, title = 503, "unavailable", _("Service unavailable")


class UpstreamTimeout(EmsupplyError):
    status, slug, title = 504, "upstream-timeout", _("Upstream service timed out")


class TooManyRequests(EmsupplyError):
    status, slug, title = 429, "rate-limited", _("Too many requests")


def problem(status: int, title: str, detail: str, *, slug: str | None = None,
            errors: dict | None = None, extra: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or str(status)),
        "title": localize(title),
        "status": status,
        "detail": localize(detail),
    }
    if errors:
        body["errors"] = {name: [localize(m) for m in messages] if isinstance(messages, list)
                          else messages for name, messages in errors.items()}
    if extra:
        body.update(extra)
    return body


# Werkzeug's names of the statuses it raises itself, to be said in the reader's language.
HTTP_TITLES = {400: _("Bad Request"), 401: _("Unauthorized"), 403: _("Forbidden"),
               404: _("Not Found"), 405: _("Method Not Allowed"), 406: _("Not Acceptable"),
               409: _("Conflict"), 413: _("Request Entity Too Large"),
               415: _("Unsupported Media Type"), 422: _("Unprocessable Entity"),
               429: _("Too Many Requests"), 431: _("Request Header Fields Too Large"),
               501: _("Not Implemented")}


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into `field.path -> [messages]`."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict | list) and not _is_message_list(value):
                out.update(flatten_messages(value, name))
            else:
                out[name] = [str(m) for m in (value if isinstance(value, list) else [value])]
    elif isinstance(messages, list):
        out[prefix or "_schema"] = [str(m) for m in messages]
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def register_error_handlers(app) -> None:
    """Map every failure of a Flask app to problem+json. The only place this happens."""
    from flask import g, jsonify, request
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout
    from werkzeug.exceptions import HTTPException

    def respond(body: dict, status: int, headers: dict | None = None):
        body["request_id"] = getattr(g, "request_id", None)
        response = jsonify(body)
        response.status_code = status
        response.mimetype = "application/problem+json"
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    @app.errorhandler(EmsupplyError)
    def on_domain_error(exc: EmsupplyError):
        return respond(problem(exc.status, exc.title, exc.detail, slug=exc.slug,
                               errors=exc.errors, extra=exc.extra), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        status = exc.code or 500
        data = getattr(exc, "data", None) or {}
        errors = None
        if "messages" in data:
            # webargs nests messages under the location ("json", "query"); the field matters.
            messages = data["messages"]
            if isinstance(messages, dict) and len(messages) == 1:
                (location, inner), = messages.items()
                messages = inner if location in ("json", "query", "headers", "form") else messages
            errors = flatten_messages(messages)
        detail = exc.description or exc.name
        if status == 422 and errors:
            named = join((join([k, ": ", join(v, " ")]) for k, v in sorted(errors.items())),
                         "; ")
            if len(named) >= 400:
                named = join(errors, ", ")
            detail = _("invalid %(fields)s", fields=named)
        writes = ("POST", "PUT", "PATCH")
        if status == 400 and request.is_json is False and request.method in writes:
            detail = _("the body must be JSON (Content-Type: application/json)")
        headers = dict(data.get("headers") or {})
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        return respond(problem(status, HTTP_TITLES.get(status, exc.name), detail, errors=errors),
                       status, headers)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def on_database_down(exc: Exception):
        # The database went away or is saturated: nothing was written (the unit of work rolled
        # back), and the same call is safe to send again once it is back.
        log.warning("database unavailable: %s", exc.__class__.__name__)
        detail = _("the database is unavailable or busy; nothing was changed, retry shortly")
        return respond(problem(503, Unavailable.title, detail, slug="unavailable"), 503,
                       {"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unhandled error")
        detail = _("an unexpected error occurred; it was logged with this request id")
        return respond(problem(500, _("Internal error"), detail), 500)
