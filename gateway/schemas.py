"""What goes in and out of the gateway's own API: the event log and webhook subscriptions."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from shared.events import EVENT_TYPES
from shared.schemas import PageQuery, StrictSchema, UtcDateTime, page_schema

ALL = "*"


class EventQuery(PageQuery):
    after = fields.Integer(strict=False, validate=validate.Range(0, 2 ** 62),
                           metadata={"description": "only events with an id above this one"})
    type = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)),
                       metadata={"description": "repeat for several types; none means all"})


class AuditQuery(PageQuery):
    entity = fields.String(required=True, validate=validate.Regexp(
        r"^(plan|incident|warning|warehouse|item|transfer|edge|roads|actor):[^\s\x00-\x1f\x7f]{1,110}$",
        error="kind:id, kind one of plan, incident, warning, warehouse, item, transfer, edge, "
              "roads, actor"), metadata={"description": "what the story is about, e.g. plan:12, "
                                                 "warehouse:KL, edge:e48, actor:李伟"})
    after = fields.Integer(strict=False, validate=validate.Range(0, 2 ** 62),
                           metadata={"description": "only events with an id above this one"})


class EventOut(Schema):
    id = fields.Integer(metadata={"description": "position in the log; de-duplicate on it"})
    key = fields.String(metadata={"description": "source:outbox id, the same on the Redis "
                                                 "stream"})
    source = fields.String()
    type = fields.String()
    at = UtcDateTime()
    data = fields.Dict()


EventPage = page_schema(EventOut)


class IngestEventIn(StrictSchema):
    id = fields.Integer(required=True, strict=True, validate=validate.Range(1, 2 ** 62))
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    at = UtcDateTime(required=True)
    data = fields.Dict(required=True)


class IngestIn(StrictSchema):
    source = fields.String(required=True, validate=validate.OneOf(("inventory", "allocation")))
    events = fields.List(fields.Nested(IngestEventIn), required=True,
                         validate=validate.Length(0, 1000))


def _event_types(values: list[str]) -> None:
    unknown = [v for v in values if v != ALL and v not in EVENT_TYPES]
    if unknown:
        raise ValidationError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)} "
                              f"or '{ALL}'")


class WebhookIn(StrictSchema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000))
    events = fields.List(fields.String(), required=True,
                         validate=[validate.Length(1, 20), _event_types],
                         metadata={"description": f"event types, or ['{ALL}'] for all"})
    secret = fields.String(required=True, load_only=True, validate=validate.Length(16, 200),
                           metadata={"description": "signs each delivery: X-Emsupply-Signature "
                                                    "= sha256=<hex HMAC-SHA256 of the body>"})
    description = fields.String(validate=validate.Length(1, 400))
    after = fields.Integer(strict=True, validate=validate.Range(0, 2 ** 62),
                           metadata={"description": "deliver events after this id (default: "
                                                    "only events from now on)"})


class WebhookPatch(StrictSchema):
    url = fields.Url(schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000))
    events = fields.List(fields.String(), validate=[validate.Length(1, 20), _event_types])
    secret = fields.String(load_only=True, validate=validate.Length(16, 200))
    description = fields.String(validate=validate.Length(1, 400))
    active = fields.Boolean()


class WebhookOut(Schema):
    id = fields.Integer()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    active = fields.Boolean()
    created_by = fields.String()
    created_at = UtcDateTime()
    cursor = fields.Integer(metadata={"description": "id of the last event handled"})
    failures = fields.Integer(metadata={"description": "failed attempts in a row"})
    next_attempt_at = UtcDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)


WebhookPage = page_schema(WebhookOut)


class DeliveryOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    attempt = fields.Integer()
    ok = fields.Boolean()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Float()
    at = UtcDateTime()


DeliveryPage = page_schema(DeliveryOut)
