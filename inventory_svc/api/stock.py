from __future__ import annotations

from flask.views import MethodView

from inventory_svc import ledger, stock
from inventory_svc.schemas import (
    BatchOut,
    LedgerPage,
    LevelsIn,
    LevelsOut,
    MovementBatchIn,
    MovementIn,
    MovementQuery,
    PostedOut,
    StockPage,
    StockQuery,
    StocktakeIn,
    StocktakeOut,
    SummaryOut,
    SummaryQuery,
)
from shared.schemas import page
from shared.web import Blueprint, context

blp = Blueprint("stock", __name__, url_prefix="/api/v1",
                description="Balances, the ledger (stock card), stocktakes and levels")
# Argument schemas are given built: webargs would build a new one for every request from a class.


@blp.route("/stock")
class Stock(MethodView):
    @blp.arguments(StockQuery(), location="query")
    @blp.response(200, StockPage)
    def get(self, query):
        """Balances: on hand, reserved, available, min and target"""
        with context().db.reading() as session:
            rows = stock.list_stock(session, query.get("warehouse"), query.get("item"),
                                    query["subtree"], query["below_min"], query["limit"],
                                    query["cursor"])
            return page(rows, query["limit"])


@blp.route("/stock/summary")
class StockSummary(MethodView):
    @blp.arguments(SummaryQuery(), location="query")
    @blp.response(200, SummaryOut)
    def get(self, query):
        """Totals for the whole network, by level or by county"""
        with context().db.reading() as session:
            return {"by": query["by"], "rows": stock.summary(session, query.get("item"),
                                                             query["by"])}


@blp.route("/movements")
class Movements(MethodView):
    @blp.arguments(MovementQuery(), location="query")
    @blp.response(200, LedgerPage)
    def get(self, query):
        """The ledger, oldest first; a balance always equals the sum of its lines"""
        with context().db.reading() as session:
            rows = ledger.stock_card(session, query.get("warehouse"), query.get("item"),
                                     query.get("since"), query["limit"], query["cursor"])
            return page(rows, query["limit"])

    @blp.arguments(MovementIn())
    @blp.command(PostedOut)
    def post(self, session, identity, data):
        """Receive, issue or adjust stock; an issue over what is available is 409"""
        return ledger.post_movement(session, identity, data)


@blp.route("/movements/batch")
class MovementBatch(MethodView):
    @blp.arguments(MovementBatchIn())
    @blp.command(BatchOut)
    def post(self, session, identity, data):
        """Several movements, all or none"""
        return ledger.post_batch(session, identity, data)


@blp.route("/stocktakes")
class Stocktakes(MethodView):
    @blp.arguments(StocktakeIn())
    @blp.command(StocktakeOut)
    def post(self, session, identity, data):
        """Post what was counted; each difference becomes an adjustment"""
        return stock.stocktake(session, identity, data)


@blp.route("/warehouses/<code>/levels")
class Levels(MethodView):
    @blp.arguments(LevelsIn())
    @blp.command(LevelsOut, 200)
    def put(self, session, identity, data, code):
        """Set min and target per item (admin, commander)"""
        return stock.set_levels(session, identity, code, data)
