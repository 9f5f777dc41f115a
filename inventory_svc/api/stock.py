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
from shared.web import Blueprint, context, run_command

blp = Blueprint("stock", __name__, url_prefix="/api/v1",
                description="Balances, the ledger (stock card), stocktakes and levels")
# Schemas are built once: webargs would build a new one for every request from a class.
POSTED, BATCH, COUNTED, LEVELS = PostedOut(), BatchOut(), StocktakeOut(), LevelsOut()


@blp.route("/stock")
class Stock(MethodView):
    @blp.arguments(StockQuery(), location="query")
    @blp.response(200, StockPage)
    def get(self, query):
        """Balances: on hand, reserved, available, min and target"""
        with context().db.unit_of_work() as session:
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
        with context().db.unit_of_work() as session:
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
    @blp.response(201, PostedOut)
    def post(self, data):
        """Receive, issue or adjust stock; an issue over what is available is 409"""
        return run_command(ledger.post_movement, data, schema=POSTED)


@blp.route("/movements/batch")
class MovementBatch(MethodView):
    @blp.arguments(MovementBatchIn())
    @blp.response(201, BatchOut)
    def post(self, data):
        """Several movements, all or none"""
        return run_command(ledger.post_batch, data, schema=BATCH)


@blp.route("/stocktakes")
class Stocktakes(MethodView):
    @blp.arguments(StocktakeIn())
    @blp.response(201, StocktakeOut)
    def post(self, data):
        """Post what was counted; each difference becomes an adjustment"""
        return run_command(stock.stocktake, data, schema=COUNTED)


@blp.route("/warehouses/<code>/levels")
class Levels(MethodView):
    @blp.arguments(LevelsIn())
    @blp.response(200, LevelsOut)
    def put(self, data, code):
        """Set min and target per item (admin, commander)"""
        return run_command(stock.set_levels, code, data, schema=LEVELS, status=200)
