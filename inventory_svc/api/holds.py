from __future__ import annotations

from flask.views import MethodView

from inventory_svc import reservations, transfers
from inventory_svc.schemas import (
    ReceiptIn,
    ReleaseIn,
    ReservationIn,
    ReservationOut,
    TransferIn,
    TransferOut,
    TransferPage,
    TransferQuery,
    TransfersIn,
    TransfersOut,
)
from shared.schemas import page
from shared.web import Blueprint, context, current_identity

blp = Blueprint("holds", __name__, url_prefix="/api/v1",
                description="Transfers between depots and reservations for plans")


@blp.route("/transfers")
class Transfers(MethodView):
    @blp.arguments(TransferQuery, location="query")
    @blp.response(200, TransferPage)
    def get(self, query):
        """Transfers touching a warehouse, by status"""
        with context().db.reading() as session:
            rows = transfers.list_transfers(session, query.get("warehouse"), query.get("status"),
                                            query["limit"], query["cursor"])
            return page(rows, query["limit"])

    @blp.arguments(TransferIn)
    @blp.command(TransferOut)
    def post(self, session, identity, data):
        """Send stock: it leaves the source now and is in transit until received"""
        return transfers.create_transfer(session, identity, data)


@blp.route("/transfers/batch")
class TransferBatch(MethodView):
    @blp.arguments(TransfersIn)
    @blp.command(TransfersOut)
    def post(self, session, identity, data):
        """Send many transfers in one call, all or none (a restocking's bulk call)"""
        return {"transfers": transfers.create_transfers(session, identity, data["transfers"])}


@blp.route("/transfers/<int:transfer_id>")
class TransferById(MethodView):
    @blp.response(200, TransferOut)
    def get(self, transfer_id):
        """One transfer"""
        with context().db.reading() as session:
            return transfers.get_transfer(session, transfer_id)


@blp.route("/transfers/<int:transfer_id>/receive")
class TransferReceipt(MethodView):
    @blp.arguments(ReceiptIn)
    @blp.command(TransferOut, 200)
    def post(self, session, identity, data, transfer_id):
        """Receive a transfer; a short line needs a reason"""
        return transfers.receive_transfer(session, identity, transfer_id, data)


@blp.route("/reservations")
class Reservations(MethodView):
    @blp.arguments(ReservationIn)
    @blp.command(ReservationOut)
    def post(self, session, identity, data):
        """Hold stock, all lines or none; 409 lists every shortfall"""
        ttl = context().settings.reservation_ttl_s
        return reservations.create_reservation(session, identity, data, ttl)


@blp.route("/reservations/<int:reservation_id>")
class ReservationById(MethodView):
    @blp.response(200, ReservationOut)
    def get(self, reservation_id):
        """One reservation (an expired hold shows as expired)"""
        with context().db.reading() as session:
            return reservations.show_reservation(session, current_identity(), reservation_id)


@blp.route("/reservations/<int:reservation_id>/commit")
class ReservationCommit(MethodView):
    @blp.command(ReservationOut, 200)
    def post(self, session, identity, reservation_id):
        """Issue the held stock: it leaves the depots"""
        return reservations.commit_reservation(session, identity, reservation_id)


@blp.route("/reservations/<int:reservation_id>/release")
class ReservationRelease(MethodView):
    @blp.arguments(ReleaseIn, required=False)
    @blp.command(ReservationOut, 200)
    def post(self, session, identity, data, reservation_id):
        """Free the held stock, or only some lines of it"""
        return reservations.release_reservation(session, identity, reservation_id, data)
