from __future__ import annotations

from flask.views import MethodView

from inventory_svc import ledger, shelf, stock
from inventory_svc.schemas import (
    BatchOut,
    ExpiringQuery,
    LedgerPage,
    LevelsIn,
    LevelsOut,
    LotPage,
    LotQuery,
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
    WriteOffIn,
)
from shared.schemas import page
from shared.web import Blueprint, context, current_identity

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


@blp.route("/stock/lots")
class StockLots(MethodView):
    @blp.arguments(LotQuery(), location="query")
    @blp.response(200, LotPage)
    def get(self, query):
        """The lots of one balance: expiry date, on hand, and whether expired (a keeper: in
        its scope)"""
        with context().db.reading() as session:
            rows = shelf.lots(session, current_identity(), query["warehouse"], query["item"],
                              query["limit"], query["cursor"])
            return page(rows, query["limit"], key=lambda row: row["id"])


@blp.route("/stock/expiring")
class StockExpiring(MethodView):
    @blp.arguments(ExpiringQuery(), location="query")
    @blp.response(200, LotPage)
    def get(self, query):
        """Lots expiring within N days and those expired, to rotate or write off (a keeper:
        in its scope)"""
        with context().db.reading() as session:
            rows = shelf.expiring(session, current_identity(), query["within_days"],
                                  query.get("warehouse"), query["limit"], query["cursor"])
            return page(rows, query["limit"], key=lambda row: row["id"])


@blp.route("/stock/write-offs")
class WriteOffs(MethodView):
    @blp.arguments(WriteOffIn())
    @blp.command(PostedOut)
    def post(self, session, identity, data):
        """Take a balance's expired lots off the shelf: one adjustment a lot, reason
        "expired" (409 while holds need that stock)"""
        return ledger.write_off(session, identity, data)


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
