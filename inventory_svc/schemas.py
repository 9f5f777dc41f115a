"""What goes in and out of the inventory API. Separate schemas for query, body and output."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from inventory_svc.ledger import QUANTITY_RULE, quantity_error
from inventory_svc.vocabulary import (
    ACTIVE,
    LEVELS,
    POSTED_KINDS,
    TRANSFER_STATUSES,
    WAREHOUSE_STATUSES,
)
from shared.schemas import (
    CODE,
    MAX_QUANTITY,
    PageQuery,
    Quantity,
    StrictSchema,
    Text,
    UtcDateTime,
    page_schema,
)
from shared.vocabulary import INCIDENT_TYPES


class WarehouseIn(StrictSchema):
    code = fields.String(required=True, validate=CODE)
    name = Text(200, required=True)
    name_zh = Text(200, allow_none=True)
    level = fields.String(required=True, validate=validate.OneOf(LEVELS))
    parent = fields.String(allow_none=True, validate=CODE)
    status = fields.String(load_default=ACTIVE, validate=validate.OneOf(WAREHOUSE_STATUSES))
    lon = fields.Float(allow_none=True, validate=validate.Range(-180, 180))
    lat = fields.Float(allow_none=True, validate=validate.Range(-90, 90))
    road_node = Text(64, allow_none=True)


class WarehousePatch(StrictSchema):
    name = Text(200)
    name_zh = Text(200, allow_none=True)
    parent = fields.String(allow_none=True, validate=CODE)
    status = fields.String(validate=validate.OneOf(WAREHOUSE_STATUSES))
    lon = fields.Float(allow_none=True, validate=validate.Range(-180, 180))
    lat = fields.Float(allow_none=True, validate=validate.Range(-90, 90))
    road_node = Text(64, allow_none=True)


class WarehouseOut(Schema):
    code = fields.String()
    name = fields.String()
    name_zh = fields.String(allow_none=True)
    level = fields.String()
    parent = fields.Function(lambda w: w.parent.code if w.parent else None)
    status = fields.String()
    lon = fields.Float(allow_none=True)
    lat = fields.Float(allow_none=True)
    road_node = fields.String(allow_none=True)
    path = fields.Function(lambda w: [p for p in w.path.split("/") if p])
    updated_at = UtcDateTime()


class WarehouseQuery(PageQuery):
    level = fields.String(validate=validate.OneOf(LEVELS))
    parent = fields.String(validate=CODE)
    status = fields.String(validate=validate.OneOf(WAREHOUSE_STATUSES))


class NormIn(StrictSchema):
    per_person = fields.Float(load_default=0.0, validate=validate.Range(0, 1_000))
    per_person_day = fields.Float(load_default=0.0, validate=validate.Range(0, 1_000))


class ItemIn(StrictSchema):
    sku = fields.String(required=True, validate=CODE)
    name = Text(200, required=True)
    name_zh = Text(200, allow_none=True)
    unit = Text(24, required=True)
    category = Text(40, load_default="general")
    unit_weight_kg = fields.Float(load_default=0.0, validate=validate.Range(0, 100_000))
    perishable = fields.Boolean(load_default=False)
    per_person = fields.Float(load_default=0.0, validate=validate.Range(0, 1_000))
    per_person_day = fields.Float(load_default=0.0, validate=validate.Range(0, 1_000))
    type_norms = fields.Dict(
        keys=fields.String(validate=validate.OneOf(INCIDENT_TYPES)),
        values=fields.Nested(NormIn), load_default=dict,
        metadata={"description": "Norms per incident type, used instead of `per_person` and "
                                 "`per_person_day` when an incident of that type derives its "
                                 "demands: {\"snow_ice\": {\"per_person\": 0.25}}"})


class ItemOut(ItemIn):
    class Meta:
        unknown = None


class MovementIn(StrictSchema):
    warehouse = fields.String(required=True, validate=CODE)
    item = fields.String(required=True, validate=CODE)
    kind = fields.String(required=True, validate=validate.OneOf(POSTED_KINDS))
    quantity = fields.Integer(
        required=True, strict=True,
        validate=validate.Range(-MAX_QUANTITY, MAX_QUANTITY),
        metadata={"description": QUANTITY_RULE})
    lot = Text(64)
    expires_on = fields.Date()
    reason = Text(400)
    reference = Text(200)

    @validates_schema(skip_on_field_errors=False)
    def _signed_as_its_kind(self, data, **kwargs):
        """QUANTITY_RULE, checked with the other fields (those that failed are not in `data`)."""
        if "kind" in data and "quantity" in data:
            problem = quantity_error(data["kind"], data["quantity"])
            if problem:
                raise ValidationError(problem, field_name="quantity")


class MovementBatchIn(StrictSchema):
    lines = fields.List(fields.Nested(MovementIn), required=True,
                        validate=validate.Length(1, 500))


class LedgerLineOut(Schema):
    id = fields.Integer()
    warehouse = fields.Function(lambda m: m.warehouse.code)
    item = fields.Function(lambda m: m.item.sku)
    kind = fields.String()
    quantity = fields.Integer()
    balance_after = fields.Integer()
    lot = fields.String()
    expires_on = fields.Date(allow_none=True)
    reason = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    actor = fields.String()
    at = UtcDateTime()


class BalanceFields(Schema):
    warehouse = fields.Function(lambda s: s.warehouse.code)
    item = fields.Function(lambda s: s.item.sku)
    on_hand = fields.Integer()
    reserved = fields.Integer()
    available = fields.Integer()
    min = fields.Integer()
    target = fields.Integer()


class BalanceOut(BalanceFields):
    """A balance as a read lists it: the read brings the codes themselves."""

    warehouse = fields.String()
    item = fields.String()


class PostedOut(BalanceFields):
    kind = fields.String()
    quantity = fields.Integer()
    lines = fields.List(fields.Nested(LedgerLineOut))


class BatchOut(Schema):
    lines = fields.List(fields.Nested(PostedOut))


class MovementQuery(PageQuery):
    warehouse = fields.String(validate=CODE)
    item = fields.String(validate=CODE)
    since = UtcDateTime()


class StockQuery(PageQuery):
    warehouse = fields.String(validate=CODE)
    item = fields.String(validate=CODE)
    subtree = fields.Boolean(load_default=False)
    below_min = fields.Boolean(load_default=False)


class SummaryQuery(StrictSchema):
    item = fields.String(validate=CODE)
    by = fields.String(load_default="level", validate=validate.OneOf(("level", "county")))


class SummaryRow(Schema):
    group = fields.String()
    item = fields.String()
    on_hand = fields.Integer()
    reserved = fields.Integer()
    available = fields.Integer()
    min = fields.Integer()
    warehouses = fields.Integer()


class SummaryOut(Schema):
    by = fields.String()
    rows = fields.List(fields.Nested(SummaryRow))


class WriteOffIn(StrictSchema):
    warehouse = fields.String(required=True, validate=CODE)
    item = fields.String(required=True, validate=CODE)
    lot = Text(64, metadata={"description": "only this lot's expired part; none: every "
                                            "expired lot of the balance"})
    reference = Text(200)


class LotQuery(PageQuery):
    warehouse = fields.String(required=True, validate=CODE)
    item = fields.String(required=True, validate=CODE)


class ExpiringQuery(PageQuery):
    within_days = fields.Integer(required=True, strict=False, validate=validate.Range(0, 3650),
                                 metadata={"description": "lots expiring up to this many days "
                                                          "from today, and those expired"})
    warehouse = fields.String(validate=CODE, metadata={"description": "this warehouse and "
                                                                      "its subtree"})


class LotOut(Schema):
    warehouse = fields.String()
    item = fields.String()
    lot = fields.String(metadata={"description": "\"\" for stock received without a lot name"})
    expires_on = fields.Date(allow_none=True)
    on_hand = fields.Integer()
    days_left = fields.Integer(allow_none=True, metadata={
        "description": "days from today (Asia/Shanghai) to the expiry date; below 0 expired"})
    expired = fields.Boolean(metadata={"description": "past its date: not available, not "
                                                      "issued; to be written off"})


class LevelIn(StrictSchema):
    item = fields.String(required=True, validate=CODE)
    min = Quantity(required=True, min=0)
    target = Quantity(required=True, min=0)


class LevelsIn(StrictSchema):
    levels = fields.List(fields.Nested(LevelIn), required=True, validate=validate.Length(1, 1000))


class LevelsOut(Schema):
    levels = fields.List(fields.Nested(BalanceFields))


class CountIn(StrictSchema):
    item = fields.String(required=True, validate=CODE)
    counted = Quantity(required=True, min=0)
    lot = Text(64)
    expires_on = fields.Date()


class StocktakeIn(StrictSchema):
    warehouse = fields.String(required=True, validate=CODE)
    counts = fields.List(fields.Nested(CountIn), required=True, validate=validate.Length(1, 1000))
    reason = Text(400)
    reference = Text(200)


class DifferenceOut(Schema):
    item = fields.String()
    expected = fields.Integer()
    counted = fields.Integer()
    difference = fields.Integer()


class StocktakeOut(Schema):
    warehouse = fields.String()
    differences = fields.List(fields.Nested(DifferenceOut))


# A bulk call of transfers: a national restocking (some 2,000 transfers) fits in one.
MAX_BATCH_TRANSFERS = 5000


class TransferLineIn(StrictSchema):
    item = fields.String(required=True, validate=CODE)
    quantity = Quantity(required=True)


class TransferIn(StrictSchema):
    source = fields.String(required=True, validate=CODE)
    destination = fields.String(required=True, validate=CODE)
    lines = fields.List(fields.Nested(TransferLineIn), required=True,
                        validate=validate.Length(1, 500))
    reason = Text(400)
    reference = Text(200)


class TransfersIn(StrictSchema):
    transfers = fields.List(fields.Nested(TransferIn), required=True,
                            validate=validate.Length(1, MAX_BATCH_TRANSFERS),
                            metadata={"description": "sent all together or none of them"})


class ReceiptLineIn(StrictSchema):
    item = fields.String(required=True, validate=CODE)
    received = Quantity(required=True, min=0)
    reason = Text(400)


class ReceiptIn(StrictSchema):
    lines = fields.List(fields.Nested(ReceiptLineIn), load_default=list,
                        metadata={"description": "only the lines that differ from what was sent"})


class TransferLineOut(Schema):
    item = fields.Function(lambda line: line.item.sku)
    quantity = fields.Integer()
    received = fields.Integer(allow_none=True)
    shortfall_reason = fields.String(allow_none=True)
    lots = fields.Raw()


class TransferOut(Schema):
    id = fields.Integer()
    source = fields.Function(lambda t: t.source.code)
    destination = fields.Function(lambda t: t.destination.code)
    status = fields.String()
    reference = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = UtcDateTime()
    received_by = fields.String(allow_none=True)
    received_at = UtcDateTime(allow_none=True)
    lines = fields.List(fields.Nested(TransferLineOut))


class TransfersOut(Schema):
    transfers = fields.List(fields.Nested(TransferOut))


class TransferQuery(PageQuery):
    warehouse = fields.String(validate=CODE)
    status = fields.String(validate=validate.OneOf(TRANSFER_STATUSES))


class ReservationLineIn(StrictSchema):
    warehouse = fields.String(required=True, validate=CODE)
    item = fields.String(required=True, validate=CODE)
    quantity = Quantity(required=True)


class ReservationIn(StrictSchema):
    lines = fields.List(fields.Nested(ReservationLineIn), required=True,
                        validate=validate.Length(1, 10_000))
    ttl_seconds = fields.Integer(strict=True, validate=validate.Range(1, 7 * 86400))
    reference = Text(200)


class ReleaseIn(StrictSchema):
    lines = fields.List(fields.Nested(ReservationLineIn), validate=validate.Length(1, 10_000),
                        metadata={"description": "release only these; none releases all"})


class ReservationLineOut(Schema):
    warehouse = fields.String(attribute="warehouse_code")
    item = fields.String(attribute="item_sku")
    quantity = fields.Integer()


class ReservationOut(Schema):
    id = fields.Integer()
    status = fields.String()
    reference = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = UtcDateTime()
    expires_at = UtcDateTime()
    closed_at = UtcDateTime(allow_none=True)
    lines = fields.List(fields.Nested(ReservationLineOut))


WarehousePage = page_schema(WarehouseOut)
ItemPage = page_schema(ItemOut)
LedgerPage = page_schema(LedgerLineOut)
StockPage = page_schema(BalanceOut)
LotPage = page_schema(LotOut)
TransferPage = page_schema(TransferOut)
