"""The analytics queries and answers (docs/analytics.md): the facts feed, KPIs and exports."""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ledger.facts import KINDS
from ledger.storage.analytics import DIMENSIONS

from .common import MAX_INT

_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.(0|[1-9][0-9]{0,8}))?")


class _Cursor(fields.String):
    """``INDEX`` (after every fact of that log index) or ``INDEX.SEQ`` (after that fact)."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> tuple[int, int | None]:
        text = super()._deserialize(value, attr, data, **kwargs)
        m = _CURSOR.fullmatch(text)
        if m is None or int(m.group(1)) > MAX_INT:
            raise ValidationError("must be a cursor INDEX or INDEX.SEQ from an earlier page")
        return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


def _names(allowed: tuple[str, ...], what: str) -> fields.Field:
    class Names(fields.String):
        def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> list[str]:
            text = super()._deserialize(value, attr, data, **kwargs)
            names = [n for n in text.split(",") if n] if text else []
            bad = [n for n in names if n not in allowed]
            if bad or len(set(names)) != len(names):
                raise ValidationError(f"must be a comma-separated list of distinct {what}: {', '.join(allowed)}")
            return names

    return Names(metadata={"description": f"comma-separated {what}: {', '.join(allowed)}"})


class FactsQuerySchema(Schema):
    after = _Cursor(metadata={"description": "the `next` of the previous page (default: from the start)"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_INT))
    kind = _names(KINDS, "kinds of fact")
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "ndjson"]),
        metadata={"description": "json (a page object) or ndjson (one fact a line); Accept: application/x-ndjson also selects ndjson"},
    )


class _Dates(Schema):
    from_ = fields.Date(data_key="from", metadata={"description": "first day, YYYY-MM-DD (inclusive)"})
    to = fields.Date(metadata={"description": "last day, YYYY-MM-DD (inclusive)"})

    @validates_schema
    def _order(self, data: dict[str, object], **kwargs: object) -> None:
        first, last = data.get("from_"), data.get("to")
        if first is not None and last is not None and first > last:  # type: ignore[operator]
            raise ValidationError("from must not be after to", "from")


class KpisQuerySchema(_Dates):
    group_by = _names(DIMENSIONS, "dimensions")


class ExportQuerySchema(_Dates):
    format = fields.String(load_default="csv", validate=validate.OneOf(["csv", "parquet"]))


class FactSchema(Schema):
    """A fact: these members, plus the fields of its kind (docs/analytics.md)."""

    class Meta:
        unknown = "include"

    cursor = fields.String(required=True, metadata={"description": "INDEX.SEQ: pass as `after` to read on from here"})
    kind = fields.String(required=True, metadata={"enum": list(KINDS)})
    index = fields.Integer(required=True, metadata={"description": "log index of the entry that completes the fact"})
    seq = fields.Integer(required=True)
    tree_size = fields.Integer(required=True, metadata={"description": "tree size of the block that sealed it"})
    entries = fields.List(fields.String(), required=True, metadata={"description": "ids of the entries it is derived from"})
    day = fields.String(required=True, metadata={"format": "date"})


class FactPageSchema(Schema):
    facts = fields.List(fields.Nested(FactSchema), required=True)
    next = fields.String(allow_none=True, metadata={"description": "cursor for the next page"})
    tree_size = fields.Integer(required=True)


class KpiGroupSchema(Schema):
    group = fields.Dict(required=True)
    shipments = fields.Integer()
    on_time_rate = fields.Float(allow_none=True)
    rejected = fields.Integer()
    transit_hours_median = fields.Float(allow_none=True)
    transit_hours_p90 = fields.Float(allow_none=True)
    delivered_lots = fields.Integer()
    delivered_quantity = fields.Float()
    certified_share = fields.Float(allow_none=True)
    payments = fields.Integer()
    days_to_pay_mean = fields.Float(allow_none=True)
    days_to_pay_median = fields.Float(allow_none=True)
    contracts_closed = fields.Integer()
    fulfilment_mean = fields.Float(allow_none=True)


class KpisSchema(Schema):
    group_by = fields.List(fields.String(), required=True)
    tree_size = fields.Integer(required=True)
    groups = fields.List(fields.Nested(KpiGroupSchema), required=True)
