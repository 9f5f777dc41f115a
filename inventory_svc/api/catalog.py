from __future__ import annotations

from flask.views import MethodView

from inventory_svc import catalog
from inventory_svc.schemas import (
    ItemIn,
    ItemOut,
    ItemPage,
    WarehouseIn,
    WarehouseOut,
    WarehousePage,
    WarehousePatch,
    WarehouseQuery,
)
from shared.schemas import PageQuery, page
from shared.web import Blueprint, context

blp = Blueprint("warehouses", __name__, url_prefix="/api/v1",
                description="The four-level depot tree and the item catalogue")


@blp.route("/warehouses")
class Warehouses(MethodView):
    @blp.arguments(WarehouseQuery, location="query")
    @blp.response(200, WarehousePage)
    def get(self, query):
        """List warehouses, by level, parent or status"""
        with context().db.reading() as session:
            rows = catalog.list_warehouses(session, query.get("level"), query.get("parent"),
                                           query.get("status"), query["limit"], query["cursor"])
            return page(rows, query["limit"])

    @blp.arguments(WarehouseIn)
    @blp.command(WarehouseOut)
    def post(self, session, identity, data):
        """Create a warehouse (admin); its parent is exactly one level up"""
        return catalog.create_warehouse(session, identity, data)


@blp.route("/warehouses/<code>")
class WarehouseByCode(MethodView):
    @blp.response(200, WarehouseOut)
    def get(self, code):
        """One warehouse"""
        with context().db.reading() as session:
            return catalog.get_warehouse(session, code)

    @blp.arguments(WarehousePatch)
    @blp.command(WarehouseOut, 200)
    def patch(self, session, identity, data, code):
        """Change a warehouse's names, status, place or parent (admin)"""
        return catalog.update_warehouse(session, identity, code, data)


@blp.route("/items")
class Items(MethodView):
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, ItemPage)
    def get(self, query):
        """The item catalogue"""
        with context().db.reading() as session:
            return page(catalog.list_items(session, query["limit"], query["cursor"]),
                        query["limit"])

    @blp.arguments(ItemIn)
    @blp.command(ItemOut)
    def post(self, session, identity, data):
        """Add an item to the catalogue (admin)"""
        return catalog.create_item(session, identity, data)


@blp.route("/items/<sku>")
class ItemBySku(MethodView):
    @blp.response(200, ItemOut)
    def get(self, sku):
        """One item"""
        with context().db.reading() as session:
            return catalog.get_item(session, sku)
