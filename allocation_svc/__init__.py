"""Allocation service: road graph, incidents, allocation plans, dispatch, re-planning,
restocking."""

from __future__ import annotations

import threading

from flask import Flask
from flask_smorest import Api

from shared import logs
from shared.config import Settings, load_settings
from shared.db import Database
from shared.web import ServiceContext, install, new_app

API_SPEC = {
    "API_TITLE": "emsupply allocation",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
}


def create_app(settings: Settings | None = None, database: Database | None = None,
               inventory_client=None) -> Flask:
    """The allocation service: settings, database, inventory client, graph cache, API."""
    from allocation_svc.api import views
    from allocation_svc.inventory import HttpInventory
    from allocation_svc.models import idempotency
    from allocation_svc.plans import Allocation
    from allocation_svc.prepositioning import Warnings
    from allocation_svc.replenish import Restocking
    from allocation_svc.roads import GraphCache

    settings = settings or load_settings("allocation")
    logs.configure("allocation")
    database = database or Database(settings.database_url)
    inventory = HttpInventory(inventory_client or inventory_service(settings))
    graphs = GraphCache(trees=_shared_trees(settings))
    app = new_app("allocation_svc")
    app.config.update(API_SPEC)
    api = Api(app)
    api.register_blueprint(views.blp)
    app.extensions["allocation"] = Allocation(database, inventory, graphs,
                                              hold_ttl_s=settings.reservation_ttl_s,
                                              driving=driving(settings))
    app.extensions["restocking"] = Restocking(database, inventory, graphs)
    app.extensions["warnings"] = Warnings(database, inventory, graphs)
    install(app, ServiceContext(settings, database, idempotency))
    if settings.warm_start:
        threading.Thread(target=app.extensions["allocation"].warm, name="warm-start",
                         daemon=True).start()
    return app


def inventory_service(settings: Settings):
    """The client to the inventory: its instances in turn (EMSUPPLY_INVENTORY_URL may list
    several). With several, each has a circuit breaker, so that one that is down is skipped
    instead of tried by every other call; with one there is nothing to skip to, and a call
    should find it the moment it is back."""
    from shared.client import ServiceClient

    urls = settings.inventory_urls
    return ServiceClient("inventory", urls, settings.secret, connect_timeout=1.0,
                         read_timeout=15.0, breaker=(5, 10.0) if len(urls) > 1 else None)


def driving(settings: Settings):
    """The vehicles of each depot level and a trip's cost, the defaults overridden by settings."""
    from dataclasses import replace

    from allocation_svc.trips import Driving, Vehicle
    from allocation_svc.vocabulary import DEPOT_LEVELS
    from shared.config import ConfigError

    chosen = Driving()
    vehicles = dict(chosen.vehicles)
    for level, name, capacity_kg in settings.vehicles:
        if level not in DEPOT_LEVELS:
            raise ConfigError(f"EMSUPPLY_VEHICLES: unknown depot level {level!r} "
                              f"(known: {', '.join(DEPOT_LEVELS)})")
        vehicles[level] = Vehicle(name, capacity_kg)
    trip_cost = chosen.trip_cost if settings.trip_cost is None else settings.trip_cost
    return replace(chosen, vehicles=vehicles, trip_cost=trip_cost)


def _shared_trees(settings: Settings):
    """With Redis, every worker shares the shortest-path trees; without it, each keeps its own."""
    if not settings.redis_url:
        return None
    import hashlib

    import redis

    from allocation_svc.treecache import RedisTreeCache

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5,
                                  socket_connect_timeout=0.5)
    origin = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
    return lambda namespace: RedisTreeCache(client, f"{origin}:{namespace}")
