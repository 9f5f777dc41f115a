from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from inventory_svc import snapshot
from shared.schemas import CODE, StrictSchema
from shared.web import Blueprint, context, json_response

blp = Blueprint("snapshot", __name__, url_prefix="/api/v1",
                description="The whole network's warehouses and balances in one read")


class SnapshotQuery(StrictSchema):
    item = fields.List(fields.String(validate=CODE), load_default=list,
                       metadata={"description": "repeat for several items; none means all"})
    since = fields.String(validate=validate.Length(1, 4000), metadata={
        "description": "the `version` of an earlier answer: answer only the balances and "
                       "the warehouses changed since"})
    digest = fields.Boolean(load_default=False, metadata={
        "description": "also answer the count and the sums of every balance's numbers, of "
                       "the whole network as this answer's version has it: a reader that kept "
                       "the network checks it against them instead of reading it all again"})


class SnapshotOut(Schema):
    version = fields.String(metadata={"description": "give it as `since` next time"})
    full = fields.Boolean(metadata={"description": "false when only changes are answered"})
    catalogue = fields.Integer(metadata={"description": "how many items the catalogue has"})
    warehouses = fields.Dict(keys=fields.String(), values=fields.List(fields.Raw()),
                             allow_none=True, metadata={
                                 "description": "null when none changed since `since`; "
                                                "after `since`, only those added or changed, "
                                                "each with its `position` in the full list"})
    stock = fields.Dict(keys=fields.String(), values=fields.List(fields.Raw()))
    digest = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "with `digest`: `balances` (how many) and the sum of each number "
                       "column (`on_hand`, `available`, ...) over the whole network"})


class Together:
    """Whole reads asked while the same one is being made wait for it and answer what it
    answers (a version like any other; the reader's next `since` brings what came after):
    allocation workers warming at once would otherwise each cost the inventory a nation's
    snapshot at the same moment (1.3-1.5 GiB and seconds each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._making: dict[tuple, Future] = {}

    def answer(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            making = self._making.get(key)
            first = making is None
            if first:
                making = self._making[key] = Future()
        if not first:
            return making.result()
        try:
            body = make()
        except BaseException as exc:
            making.set_exception(exc)
            raise
        else:
            making.set_result(body)
            return body
        finally:
            with self._lock:
                del self._making[key]


WHOLE_READS = Together()


@blp.route("/stock/snapshot")
class Snapshot(MethodView):
    @blp.arguments(SnapshotQuery, location="query")
    @blp.response(200, SnapshotOut)
    def get(self, query):
        """Every warehouse (code, level, path, status, road node) and balance, as columns"""
        db = context().db

        def make() -> bytes:
            with db.reading(one_view=True) as session:
                answer = snapshot.snapshot(session, query["item"], query.get("since"),
                                           digest=query["digest"])
            # Plain columns of numbers and strings: the schema documents them, and dumping
            # them through it would walk every value (seconds at national scale).
            return json_response(answer, 200).get_data()

        if query.get("since"):
            body = make()
        else:
            body = WHOLE_READS.answer((db.url, tuple(query["item"]),
                                       query["digest"]), make)
        return Response(body, status=200, mimetype="application/json")
