"""What goes in and out of the allocation API."""

from __future__ import annotations

from marshmallow import Schema, fields, post_dump, validate, validates_schema
from marshmallow.exceptions import ValidationError

from allocation_svc.roadtable import STATUS_CODES
from allocation_svc.vocabulary import BACKBONE, INCIDENT_STATUSES, INCIDENT_TYPES, LEVELS, POLICIES
from shared import i18n
from shared.schemas import CODE, PageQuery, Quantity, StrictSchema, Text, UtcDateTime, page_schema


class RoadEventIn(StrictSchema):
    edge = Text(64, required=True)
    status = fields.String(required=True, validate=validate.OneOf(tuple(STATUS_CODES)))
    speed_factor = fields.Float(validate=validate.Range(0.01, 1.0))
    reason = Text(400)


class RoadEventsIn(StrictSchema):
    events = fields.List(fields.Nested(RoadEventIn), required=True,
                         validate=validate.Length(1, 10_000))


class GraphVersionOut(Schema):
    graph_version = fields.Integer()
    nodes = fields.Integer()
    edges = fields.Integer()
    events = fields.List(fields.Dict())


class RouteQuery(StrictSchema):
    from_ = fields.String(data_key="from", required=True, validate=validate.Length(1, 64))
    to = fields.String(required=True, validate=validate.Length(1, 64))


class RouteOut(Schema):
    graph_version = fields.Integer()
    minutes = fields.Float()
    distance_km = fields.Float()
    path = fields.List(fields.String())
    geometry = fields.Dict()


class SiteIn(StrictSchema):
    id = fields.String(validate=validate.Length(1, 64))
    warehouse = fields.String(validate=CODE)
    node = Text(64)
    population = fields.Integer(strict=True, validate=validate.Range(0, 100_000_000))


class IncidentIn(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(INCIDENT_TYPES))
    level = fields.String(validate=validate.OneOf(LEVELS), allow_none=True)
    title = Text(200, allow_none=True)
    sites = fields.List(fields.Nested(SiteIn), required=True, validate=validate.Length(1, 500))
    drill = fields.Boolean(load_default=False, metadata={
        "description": "a drill: its plans are made, dispatched and re-planned like a real "
                       "response's, but never hold or move stock"})


class IncidentPatch(StrictSchema):
    type = fields.String(validate=validate.OneOf(INCIDENT_TYPES))
    level = fields.String(validate=validate.OneOf(LEVELS), allow_none=True)
    title = Text(200, allow_none=True)
    status = fields.String(validate=validate.OneOf(INCIDENT_STATUSES))
    sites = fields.List(fields.Nested(SiteIn), validate=validate.Length(1, 500))


class SiteOut(Schema):
    id = fields.String()
    warehouse = fields.String(allow_none=True)
    node = fields.String()
    population = fields.Integer()
    township = fields.String(allow_none=True)
    county = fields.String(allow_none=True)


class AmendmentOut(Schema):
    at = fields.String()
    actor = fields.String()
    changes = fields.Dict(metadata={"description": "field -> {from, to}"})


class IncidentOut(Schema):
    id = fields.Integer()
    type = fields.String()
    level = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    status = fields.String()
    sites = fields.List(fields.Nested(SiteOut))
    drill = fields.Boolean()
    history = fields.List(fields.Nested(AmendmentOut), metadata={
        "description": "every amendment after the first report, oldest first"})
    created_by = fields.String()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class IncidentQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(INCIDENT_STATUSES))


class DemandIn(StrictSchema):
    site = fields.String(required=True, validate=validate.Length(1, 64))
    item = fields.String(required=True, validate=CODE)
    quantity = Quantity(required=True)
    priority = fields.Integer(strict=True, load_default=2, validate=validate.Range(1, 3))


class AllocationIn(StrictSchema):
    demands = fields.List(fields.Nested(DemandIn), validate=validate.Length(0, 5000))
    population_days = fields.Integer(strict=True, validate=validate.Range(1, 90))
    policy = fields.String(load_default=BACKBONE, validate=validate.OneOf(POLICIES), metadata={
        "description": "backbone (default): the incident's townships, then their county depot, "
                       "then the prefecture and other county depots, then township centres "
                       "(州级为支撑、县级为基础、乡村为补充); graded: township, county, "
                       "prefecture; nearest: the fastest depots first"})
    max_minutes = fields.Float(allow_none=True, validate=validate.Range(min=0, min_inclusive=False,
                                                                        max=100_000))
    keep_min = fields.Boolean(allow_none=True, load_default=None, metadata={
        "description": "depots outside the incident keep their min (default: yes for backbone, "
                       "no otherwise)"})
    outside_villages = fields.Boolean(load_default=False, metadata={
        "description": "backbone: may draw on village points outside the incident's townships "
                       "(their villages' own reserve), last"})
    trip_cost = fields.Float(allow_none=True, validate=validate.Range(0, 1e9), metadata={
        "description": "what one more trip is worth in unit-minutes (default: the service's)"})

    @validates_schema
    def something_to_plan(self, data, **kwargs):
        if not data.get("demands") and not data.get("population_days"):
            raise ValidationError("give demands, or population_days", "demands")


class ShipmentOut(Schema):
    id = fields.Integer()
    from_ = fields.String(attribute="source", data_key="from")
    to = fields.String(attribute="site")
    item = fields.String()
    quantity = fields.Integer()
    minutes = fields.Float()
    distance_km = fields.Float()
    path = fields.List(fields.String())
    reason = fields.String()
    status = fields.String()
    delivered = fields.Integer()
    delivered_at = UtcDateTime(allow_none=True)
    note = fields.String(allow_none=True)

    @post_dump(pass_original=True)
    def in_the_readers_language(self, data: dict, shipment, **kwargs) -> dict:
        parts = getattr(shipment, "reason_parts", None)
        if parts:
            data["reason"] = i18n.localize(i18n.load(parts))
        return data


class UnmetOut(Schema):
    site = fields.String()
    item = fields.String()
    quantity = fields.Integer()
    reason = fields.String(metadata={"description": "no_stock_in_reach, no_open_road or "
                                                    "beyond_max_minutes"})
    detail = fields.String(metadata={"description": "in the reader's language"})

    @post_dump(pass_original=True)
    def in_the_readers_language(self, data: dict, unmet: dict, **kwargs) -> dict:
        parts = unmet.get("detail_parts") if isinstance(unmet, dict) else None
        if parts:
            data["detail"] = i18n.localize(i18n.load(parts))
        return data


class DemandOut(Schema):
    site = fields.String()
    item = fields.String()
    quantity = fields.Integer()
    priority = fields.Integer()


class TripLineOut(Schema):
    item = fields.String()
    quantity = fields.Integer()


class TripOut(Schema):
    from_ = fields.String(attribute="from", data_key="from")
    to = fields.String()
    vehicle = fields.String()
    capacity_kg = fields.Float()
    lines = fields.List(fields.Nested(TripLineOut))
    weight_kg = fields.Float()
    minutes = fields.Float()
    distance_km = fields.Float()
    path = fields.List(fields.String())


class PlanOut(Schema):
    id = fields.Integer()
    incident = fields.Integer(attribute="incident_id")
    status = fields.String()
    graph_version = fields.Integer()
    policy = fields.Dict()
    demands = fields.List(fields.Nested(DemandOut))
    shipments = fields.List(fields.Nested(ShipmentOut))
    unmet = fields.List(fields.Nested(UnmetOut))
    cost = fields.Float(metadata={"description": "sum of quantity x minutes"})
    trips = fields.List(fields.Nested(TripOut), metadata={
        "description": "one vehicle from one depot to one site with what it carries"})
    objective = fields.Float(allow_none=True, metadata={
        "description": "cost + trip_cost x trips: what the plan minimises"})
    bound = fields.Float(allow_none=True, metadata={
        "description": "a lower bound of the objective (none after a re-plan)"})
    gap = fields.Float(allow_none=True, metadata={
        "description": "(objective - bound) / objective"})
    reservations = fields.List(fields.Integer())
    hold_expires_at = UtcDateTime(allow_none=True, metadata={
        "description": "the hold runs out then unless the plan is dispatched: the plan is then "
                       "`lapsed` (POST /allocations/{id}/hold holds it again)"})
    drill = fields.Boolean()
    failure = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class DeliveryIn(StrictSchema):
    shipment = fields.Integer(required=True, strict=True)
    quantity = Quantity()
    at = UtcDateTime()
    note = Text(400)


class DeliveriesIn(StrictSchema):
    deliveries = fields.List(fields.Nested(DeliveryIn), required=True,
                             validate=validate.Length(1, 5000))


class ReplenishmentIn(StrictSchema):
    within = fields.String(validate=CODE, metadata={"description": "only this subtree"})
    items = fields.List(fields.String(validate=CODE))


class ReplenishmentLineOut(Schema):
    source = fields.String()
    destination = fields.String()
    item = fields.String()
    quantity = fields.Integer()
    minutes = fields.Float()
    distance_km = fields.Float()
    path = fields.List(fields.String())


class ShortOut(Schema):
    warehouse = fields.String()
    item = fields.String()
    quantity = fields.Integer()
    reason = fields.String()


class ReplenishmentOut(Schema):
    id = fields.Integer()
    status = fields.String()
    graph_version = fields.Integer()
    lines = fields.List(fields.Nested(ReplenishmentLineOut))
    short = fields.List(fields.Nested(ShortOut))
    transfers = fields.List(fields.Dict())
    created_at = UtcDateTime()
    executed_at = UtcDateTime(allow_none=True)


class WarningIn(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(INCIDENT_TYPES))
    area = fields.List(fields.String(validate=CODE), required=True,
                       validate=validate.Length(1, 100), metadata={
                           "description": "township or county depot codes"})
    starts_at = UtcDateTime(required=True)
    ends_at = UtcDateTime(required=True)
    people = fields.Integer(strict=True, required=True, validate=validate.Range(1, 10_000_000),
                            metadata={"description": "who may have to leave home"})
    days = fields.Integer(strict=True, load_default=3, validate=validate.Range(1, 30))


class WarningOut(Schema):
    id = fields.Integer()
    type = fields.String()
    area = fields.List(fields.String())
    starts_at = UtcDateTime()
    ends_at = UtcDateTime()
    people = fields.Integer()
    days = fields.Integer()
    replenishment_id = fields.Integer(allow_none=True, metadata={
        "description": "its pre-positioning proposal, once asked for"})
    created_by = fields.String()
    created_at = UtcDateTime()


IncidentPage = page_schema(IncidentOut)


class RoadsIn(Schema):
    """A GeoJSON FeatureCollection; features are checked one by one on import."""

    type = fields.String(required=True, validate=validate.Equal("FeatureCollection"))
    features = fields.Raw(required=True, metadata={"type": "array", "items": {"type": "object"}})
    graph_version = fields.Integer(strict=True, metadata={
        "description": "as `GET /roads` answers it; ignored, so that an export can be PUT back"})


class RoadsQuery(Schema):
    allow_empty = fields.Boolean(load_default=False, metadata={
        "description": "replace the network with one without roads (closes every route)"})
