"""The gateway's own public API: the event log and webhook subscriptions."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, current_app
from flask.views import MethodView

from gateway import events, webhooks
from gateway.permissions import require
from gateway.schemas import (
    AuditQuery,
    DeliveryPage,
    EventPage,
    EventQuery,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
)
from shared.schemas import PageQuery, page
from shared.web import Blueprint, context, current_identity

events_blp = Blueprint("events", __name__, url_prefix="/api/v1",
                       description="The event log of every service, in order")
webhooks_blp = Blueprint("webhooks", __name__, url_prefix="/api/v1",
                         description="Signed, ordered, retried deliveries of events")


def _targets() -> webhooks.Targets:
    """Where webhooks may go: the admin's setting, and the ports of the suite's services."""
    state = current_app.extensions["gateway"]
    settings = state.settings
    ports = {settings.port} | {urlsplit(url).port
                               for url in (*settings.inventory_urls, *settings.allocation_urls)}
    return webhooks.Targets(state.options.webhook_allow_internal,
                            frozenset(p for p in ports if p))


@events_blp.route("/events")
class Events(MethodView):
    @events_blp.arguments(EventQuery, location="query")
    @events_blp.response(200, EventPage)
    def get(self, query):
        """Events after an id (`after`, or the `cursor` of the previous page), oldest first"""
        require(current_identity(), "events.read")
        after = max(query.get("after", 0), query["cursor"])
        with context().db.reading() as session:
            rows = events.list_events(session, after, query.get("type"), query["limit"])
            return page(rows, query["limit"])


@events_blp.route("/audit")
class Audit(MethodView):
    @events_blp.arguments(AuditQuery, location="query")
    @events_blp.response(200, EventPage)
    def get(self, query):
        """Who changed what: the events about one entity (`plan:12`, `warehouse:KL`,
        `edge:e48`, `actor:NAME` ...), oldest first, each with its actor"""
        require(current_identity(), "events.read")
        after = max(query.get("after", 0), query["cursor"])
        with context().db.reading() as session:
            return page(events.audit(session, query["entity"], after, query["limit"]),
                        query["limit"])


@webhooks_blp.route("/webhooks")
class Webhooks(MethodView):
    @webhooks_blp.arguments(PageQuery, location="query")
    @webhooks_blp.response(200, WebhookPage)
    def get(self, query):
        """Subscriptions (an integration sees its own; an admin sees all)"""
        with context().db.reading() as session:
            rows = webhooks.list_webhooks(session, current_identity(), query["limit"],
                                          query["cursor"])
            return page(rows, query["limit"])

    @webhooks_blp.arguments(WebhookIn)
    @webhooks_blp.command(WebhookOut)
    def post(self, session, identity, data):
        """Subscribe a URL to event types (admin, integration); internal URLs are refused
        unless the admin allows them"""
        return webhooks.create_webhook(session, identity, data, _targets())


@webhooks_blp.route("/webhooks/<int:webhook_id>")
class WebhookById(MethodView):
    @webhooks_blp.response(200, WebhookOut)
    def get(self, webhook_id):
        """One subscription and where its deliveries stand"""
        with context().db.reading() as session:
            return webhooks.get_webhook(session, current_identity(), webhook_id)

    @webhooks_blp.arguments(WebhookPatch)
    @webhooks_blp.command(WebhookOut, 200)
    def patch(self, session, identity, data, webhook_id):
        """Change the URL, types or secret; pause (`active: false`) or resume"""
        return webhooks.update_webhook(session, identity, webhook_id, data, _targets())

    @webhooks_blp.response(204)
    def delete(self, webhook_id):
        """Remove a subscription and its delivery record"""
        with context().db.unit_of_work() as session:
            webhooks.delete_webhook(session, current_identity(), webhook_id)
        return Response(status=204)


@webhooks_blp.route("/webhooks/<int:webhook_id>/deliveries")
class Deliveries(MethodView):
    @webhooks_blp.arguments(PageQuery, location="query")
    @webhooks_blp.response(200, DeliveryPage)
    def get(self, query, webhook_id):
        """Every delivery attempt, oldest first: event, status, error, duration"""
        with context().db.reading() as session:
            rows = webhooks.list_deliveries(session, current_identity(), webhook_id,
                                            query["limit"], query["cursor"])
            return page(rows, query["limit"])
