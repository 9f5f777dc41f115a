"""The gateway: the one door of the suite. Authenticates bearer tokens, limits their rate,
passes each `/api/v1` call on to the service that owns it with the caller's signed identity,
keeps the event log and the webhooks, and serves the merged OpenAPI document and `/docs`."""

from __future__ import annotations

from flask import Flask, g, request
from flask_smorest import Api
from marshmallow import ValidationError

from shared import logs
from shared.config import Settings, load_settings
from shared.db import Database
from shared.errors import (
    EmsupplyError,
    Forbidden,
    InvalidInput,
    Unauthenticated,
    flatten_messages,
)
from shared.web import ServiceContext, install, json_response, new_app

API_SPEC = {
    "API_TITLE": "emsupply gateway",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": None,  # the gateway serves the merged document itself
}
OPEN_API_PATHS = ("/api/v1/openapi.json",)


class Gateway:
    """What the gateway's views share, in `app.extensions["gateway"]`."""

    def __init__(self, settings, options, db, upstreams, tokens, document, redis):
        self.settings = settings
        self.options = options
        self.db = db
        self.upstreams = upstreams
        self.tokens = tokens
        self.document = document
        self.redis = redis

    def close(self) -> None:
        for upstream in self.upstreams.values():
            upstream.close()
        if self.redis is not None:
            self.redis.close()


def create_app(settings: Settings | None = None, database: Database | None = None,
               options=None) -> Flask:
    """Settings, database, tokens, upstreams, API, glue, auth, rate limits, routes: in order."""
    from gateway import api as gateway_api
    from gateway import console, events, intake, permissions, proxy
    from gateway.models import idempotency
    from gateway.openapi import Document
    from gateway.options import UPSTREAMS, load_options
    from gateway.ratelimit import RateLimits
    from gateway.schemas import IngestIn
    from gateway.tokens import TokenStore
    from shared import auth
    from shared.redis import connect

    settings = settings or load_settings("gateway")
    options = options or load_options()
    logs.configure("gateway")
    app = new_app("gateway")
    app.config.update(API_SPEC)
    api = Api(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    for blueprint in (gateway_api.events_blp, gateway_api.webhooks_blp, console.whoami_blp):
        api.register_blueprint(blueprint)
    db = database or Database(settings.database_url)
    urls = {"inventory": settings.inventory_urls, "allocation": settings.allocation_urls}
    upstreams = {name: proxy.Upstream(name, urls[name], settings.secret, options)
                 for name in UPSTREAMS}
    redis = connect(settings.redis_url) if settings.redis_url else None
    state = Gateway(settings, options, db, upstreams, TokenStore(db, options.token_cache_s),
                    Document(api.spec.to_dict(), upstreams, options.openapi_cache_s), redis)
    app.extensions["gateway"] = state

    checks = [_service_check(upstreams[name]) for name in options.required_services]
    if redis is not None:
        checks.append(_redis_check(redis))
    install(app, ServiceContext(settings, db, idempotency, tuple(checks)), authenticate=False)
    intake.install(app, options)

    @app.before_request
    def authenticate():
        path = request.path
        if path.startswith("/api/") and path not in OPEN_API_PATHS:
            try:
                g.identity, g.token_id = state.tokens.authenticate(request.headers.get(
                    "Authorization"))
            except Unauthenticated as exc:
                g.refused = exc  # answered once the rate limit of its address counted it

    rate_limits = RateLimits(options, settings.redis_url)

    @app.before_request
    def limit_rate():  # a refused call is counted (by its address) before it is answered
        if "token_id" in g:
            rate_limits.count_token(g.token_id)
        elif "refused" in g:
            rate_limits.count_address(request.remote_addr)

    @app.before_request
    def refuse():
        if "refused" in g:
            raise g.refused
        if "identity" in g:
            permissions.require_method(g.identity, request.method)

    # Only the services' resources are passed on: the gateway's own paths keep their methods
    # (a PUT on /api/v1/events is a 405 with Allow, not a hop) and the rest is a plain 404.
    owned = f"/api/v1/<any({', '.join(sorted(proxy.ROUTES))}):resource>"
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]

    @app.route(owned, methods=methods, provide_automatic_options=False)
    @app.route(owned + "/<path:rest>", methods=methods, provide_automatic_options=False)
    def passthrough(resource, rest=None):
        return proxy.forward(upstreams, request, g.identity, g.request_id)

    @app.get("/api/v1/openapi.json")
    def openapi():
        return json_response(state.document.get(), 200)

    @app.post("/internal/v1/events")
    def ingest():
        identity = auth.verify(settings.secret, request.headers, request.method,
                               request.full_path.rstrip("?"), request.get_data(cache=True),
                               settings.signature_max_age_s)
        if not permissions.may(identity, "events.ingest"):
            raise Forbidden("only a service's relay may send events")
        try:
            data = IngestIn().load(request.get_json(force=True, silent=False))
        except ValidationError as exc:
            raise InvalidInput("these are not events a relay sends",
                               errors=flatten_messages(exc.messages)) from None
        with db.unit_of_work() as session:
            return json_response(events.ingest(session, data["source"], data["events"]), 200)

    app.register_blueprint(console.bp)
    return app


class NotReady(RuntimeError):
    """A failed readiness check, with its report of each instance."""

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report


def _service_check(upstream):
    """Ready when one of the service's instances is; the report names each instance: whether
    its /readyz answered 200, and the state of its circuit."""
    def check():
        report, problems = [], []
        for instance, answer in upstream.client.fetch_each("/readyz", timeout=(0.5, 2.0)):
            if isinstance(answer, EmsupplyError):
                problem = f"{answer.detail} at {instance.url}"
            elif answer.status != 200:
                problem = f"not ready (its /readyz answered {answer.status})"
            else:
                problem = None
            entry = {"url": instance.url, "ready": problem is None,
                     "circuit": instance.breaker.state if instance.breaker else "closed"}
            if problem:
                entry["detail"] = problem
                problems.append(f"{instance.url}: {problem}")
            report.append(entry)
        if any(entry["ready"] for entry in report):
            return report
        if len(report) == 1:
            raise NotReady(report[0]["detail"], report)
        raise NotReady("no instance is ready (" + "; ".join(problems) + ")", report)
    check.__name__ = upstream.name
    return check


def _redis_check(redis):
    def check():
        redis.ping()
    check.__name__ = "redis"
    return check
