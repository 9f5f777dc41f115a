"""Inventory service: warehouses, items, the stock ledger, transfers, stocktakes, reservations."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from shared import logs
from shared.config import Settings, load_settings
from shared.db import Database
from shared.web import ServiceContext, install, new_app

API_SPEC = {
    "API_TITLE": "emsupply inventory",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    # A reservation of 10,000 lines is under 1 MiB; anything far bigger is refused with 413.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
}


def create_app(settings: Settings | None = None, database: Database | None = None) -> Flask:
    """The inventory service: settings, database, API blueprints, shared glue, in that order."""
    from inventory_svc.api import catalog, holds, snapshot, stock
    from inventory_svc.models import idempotency

    settings = settings or load_settings("inventory")
    logs.configure("inventory")
    app = new_app("inventory_svc")
    app.config.update(API_SPEC)
    api = Api(app)
    for blueprint in (catalog.blp, stock.blp, snapshot.blp, holds.blp):
        api.register_blueprint(blueprint)
    install(app, ServiceContext(settings, database or Database(settings.database_url),
                                idempotency))
    return app
