"""Input validation every app shares: strict serializers, text and date-time fields, JSON
that SQL and Chroma can store, and one ``validate`` that turns DRF's errors into
:class:`InvalidInput` naming the first bad field.

These were in apps/memories/schemas.py; tenancy, audit and privacy validate their bodies
the same way, and core is the layer below them all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.errors import InvalidInput, flatten_validation_error


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo ('tag' for 'tags') is an error."""

    #: The OpenAPI schema says ``additionalProperties: false`` (apps/core/openapi.py).
    refuses_unknown_fields = True

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                name = unknown[0]
                hint = (
                    " agent_id comes from the API key, never from the body."
                    if name == "agent_id"
                    else ""
                )
                raise serializers.ValidationError({name: f"unknown field {name!r}.{hint}"})
            # DRF's CharField turns 0 into "0"; the schema says string, so a number is a 400.
            for name, field in self.fields.items():
                value = data.get(name)
                if (isinstance(field, serializers.CharField) and not field.read_only
                        and value is not None and not isinstance(value, str)):
                    raise serializers.ValidationError({name: "must be a string."})
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly stringifying them."""

    default_error_messages = {"invalid": "must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class UTCDateTimeField(serializers.DateTimeField):
    """A date-time normalised to UTC; one that cannot be (year 1 at +05:00) is refused.

    Otherwise the database adapter's conversion overflows later and answers 500.
    """

    def to_internal_value(self, value):
        parsed = super().to_internal_value(value)
        try:
            return parsed.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise serializers.ValidationError("date-time out of range.", code="invalid") from None


class DateOrDateTimeField(UTCDateTimeField):
    """A date-time, or a bare date meaning its midnight UTC (seed 003's X-Memory-After)."""

    def to_internal_value(self, value):
        if isinstance(value, str) and len(value) == 10:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                pass
            else:
                return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return super().to_internal_value(value)


def check_bytes(value: str, limit: int, what: str) -> str:
    size = len(value.encode())
    if size > limit:
        raise serializers.ValidationError(f"{what} is {size} bytes; the limit is {limit}.", code="too_long")
    return value


class StrictBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only: DRF's BooleanField also takes 0, 1, "yes", "off"…,
    which the OpenAPI schema (``type: boolean``) says are refused."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class TagsField(serializers.ListField):
    """Tags: trimmed, blanks dropped, duplicates folded, within MEMORYWEB_LIMITS."""

    def __init__(self, **kwargs):
        limits = settings.MEMORYWEB_LIMITS
        kwargs.setdefault("child", TextField(max_length=limits["max_tag_length"], allow_blank=False))
        kwargs.setdefault("max_length", limits["max_tags"])
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        tags = super().to_internal_value(data)
        return list(dict.fromkeys(t.strip() for t in tags if t.strip()))


INT64 = (-(2**63), 2**63 - 1)


def check_json_text(value: Any, path: str = "metadata") -> None:
    """Refuse what SQL or Chroma cannot store: NUL, lone surrogates, int64 overflow.

    Accepting them would store a memory that then fails to render (500 on every read)
    or to index (a poison row in the outbox).
    """
    strings = [value] if isinstance(value, str) else []
    if isinstance(value, dict):
        for key, item in value.items():
            check_json_text(key, f"{path} key")
            check_json_text(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_text(item, f"{path}[{index}]")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)) and not INT64[0] <= value <= INT64[1]:
        # Floats too: the schema's JSON number cannot tell 1e19 from 10000000000000000000.
        raise serializers.ValidationError(f"{path}: numbers must fit in 64-bit integers' range.")
    for text in strings:
        if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise serializers.ValidationError(f"{path}: NUL and lone surrogate characters are not allowed.")


#: Arrays/objects inside each other in metadata, the metadata object itself being 1. Far
#: under the body limit (MEMORYWEB_MAX_JSON_DEPTH, at least 16) wherever metadata sits in a
#: body, so the limit is the same at every door and the OpenAPI schema can state it exactly.
MAX_METADATA_DEPTH = 8


def json_depth(value: Any) -> int:
    """How many arrays/objects nest inside each other in ``value`` (a scalar is 0)."""
    depth, level = 0, [value]
    while containers := [item for item in level if isinstance(item, (dict, list))]:
        depth += 1
        level = [item for container in containers
                 for item in (container.values() if isinstance(container, dict) else container)]
    return depth


def validate(serializer_class: type[serializers.Serializer], data: Any, *, partial: bool = False,
             prefix: str = "") -> dict[str, Any]:
    """Validate ``data`` or raise :class:`InvalidInput` naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object.", field=prefix or None)
    serializer = serializer_class(data=data, partial=partial)
    if not serializer.is_valid():
        raise _invalid(serializer.errors, prefix)
    return dict(serializer.validated_data)


def _invalid(detail: Any, prefix: str) -> InvalidInput:
    """DRF's error detail as the :class:`InvalidInput` naming its first bad field."""
    field, message, code = flatten_validation_error(detail)
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    return InvalidInput(message, field=field, code=code)


def validate_each(serializer_class: type[serializers.Serializer], items: Sequence[Any], *,
                  prefix: str) -> Iterator[dict[str, Any]]:
    """:func:`validate` for each item of a list, through one serializer instance: DRF
    deep-copies a serializer's declared fields for every instance (about 0.6 ms for a
    memory's here), which a batch of 1,000 memories paid a thousand times. ``prefix`` is
    formatted with the item's index (``"memories[{}]"``)."""
    serializer = serializer_class()
    for index, data in enumerate(items):
        where = prefix.format(index)
        if not isinstance(data, dict):
            raise InvalidInput("expected a JSON object.", field=where)
        try:
            yield dict(serializer.run_validation(data))
        except serializers.ValidationError as exc:
            raise _invalid(exc.detail, where) from None
