"""Schema building blocks every service uses: strict numbers, UTC times, pages and cursors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

MAX_QUANTITY = 1_000_000_000
CODE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\Z",
                       error="1 to 40 letters, digits, '_', '.' or '-', starting with a letter "
                             "or digit")


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped; so is text no database can store
    (a NUL character, an unpaired surrogate from a JSON escape like "\\ud800")."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _storable_text(self, data, **kwargs):
        where = _unstorable(data)
        if where is not None:
            raise ValidationError(["must not contain NUL characters or unpaired surrogates"],
                                  field_name=where or "_schema")
        return data


def _unstorable(value, path: str = "") -> str | None:
    """The dotted path of the first string (value or key) in `value` that cannot be stored."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return path if "\x00" in value else None
    if isinstance(value, Mapping):  # a JSON object, or the query string's MultiDict
        for key, inner in value.items():
            name = f"{path}.{key}" if path else str(key)
            if _unstorable(key) is not None:
                return path
            found = _unstorable(inner, name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found = _unstorable(inner, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def Text(longest: int, **kwargs) -> fields.String:  # noqa: N802 (reads like a field)
    return fields.String(validate=validate.Length(1, longest), **kwargs)


def Quantity(**kwargs) -> fields.Integer:  # noqa: N802 (a field factory reads like a field)
    low = kwargs.pop("min", 1)
    return fields.Integer(strict=True, validate=validate.Range(min=low, max=MAX_QUANTITY),
                          **kwargs)


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC; naive values from SQLite are UTC by construction."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def _deserialize(self, value, attr, data, **kwargs):
        moment: datetime = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
            raise ValidationError("out of the range of UTC times") from None


class Cursor(fields.String):
    """An opaque position in a list ordered by id; today the last id seen."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.isdigit() or len(text) > 18:
            raise ValidationError("not a cursor returned by this list")
        return int(text)


class PageQuery(StrictSchema):
    limit = fields.Integer(strict=False, load_default=100, validate=validate.Range(1, 1000))
    cursor = Cursor(load_default=0)


def page(rows: list, limit: int, key=lambda row: row.id) -> dict:
    """The page of `rows` (fetched with `limit`) and the cursor of the next one, if any."""
    return {"items": rows, "next_cursor": str(key(rows[-1])) if len(rows) == limit else None}


def page_schema(item_schema: type[Schema]) -> type[Schema]:
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return type(name, (Schema,), {
        "items": fields.List(fields.Nested(item_schema)),
        "next_cursor": fields.String(allow_none=True),
    })
