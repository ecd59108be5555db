"""Input shapes of the memory services, validated once for every door.

These DRF serializers are used by the service layer itself (not only by the REST
views), so the WebSocket, MCP, admin and command doors get the same checks and the
same error messages. The REST views reuse them for the OpenAPI schema.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.errors import InvalidInput, flatten_validation_error
from apps.memories.models import MemoryKind

LIMITS = settings.MEMORYWEB_LIMITS


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo ('tag' for 'tags') is an error."""

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


def _check_bytes(value: str, limit: int, what: str) -> str:
    size = len(value.encode())
    if size > limit:
        raise serializers.ValidationError(f"{what} is {size} bytes; the limit is {limit}.", code="too_long")
    return value


class TagsField(serializers.ListField):
    child = TextField(max_length=LIMITS["max_tag_length"], allow_blank=False)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", LIMITS["max_tags"])
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
    elif isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise serializers.ValidationError(f"{path}: integers must fit in 64 bits.")
    for text in strings:
        if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise serializers.ValidationError(f"{path}: NUL and lone surrogate characters are not allowed.")


class MetadataField(serializers.JSONField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.")
        check_json_text(value)
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > LIMITS["max_metadata_bytes"]:
            raise serializers.ValidationError(
                f"metadata is {size} bytes; the limit is {LIMITS['max_metadata_bytes']}.",
                code="too_long",
            )
        return value


class MemoryInput(StrictSerializer):
    """One memory to store. ``namespace`` is only for system-admin keys."""

    content = TextField(trim_whitespace=True)
    kind = serializers.ChoiceField(choices=MemoryKind.choices, default=MemoryKind.FACT)
    tags = TagsField(required=False, default=list)
    metadata = MetadataField(required=False, default=dict)
    session_id = TextField(
        max_length=LIMITS["max_id_length"], required=False, allow_blank=True, default=""
    )
    importance = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)
    confidence = serializers.FloatField(min_value=0.0, max_value=1.0, default=1.0)
    expires_at = UTCDateTimeField(required=False, allow_null=True, default=None)
    valid_from = UTCDateTimeField(required=False, allow_null=True, default=None)
    valid_until = UTCDateTimeField(required=False, allow_null=True, default=None)
    namespace = serializers.SlugField(required=False, allow_blank=True)

    def validate_content(self, value: str) -> str:
        return _check_bytes(value, LIMITS["max_content_bytes"], "content")

    def validate(self, attrs):
        if attrs.get("valid_from") and attrs.get("valid_until"):
            if attrs["valid_until"] <= attrs["valid_from"]:
                raise serializers.ValidationError({"valid_until": "must be after valid_from."})
        return attrs


class MemoryUpdate(MemoryInput):
    """Fields an edit may change; agent_id, session_id and namespace are provenance."""

    session_id = None
    namespace = None


class MemoryBatchInput(StrictSerializer):
    """The batch envelope; the service checks the size and each memory."""

    memories = serializers.ListField(child=serializers.JSONField())
    namespace = serializers.SlugField(required=False, allow_blank=True)


class RecallFilters(StrictSerializer):
    agent_id = TextField(max_length=LIMITS["max_id_length"], required=False)
    session_id = TextField(max_length=LIMITS["max_id_length"], required=False)
    kind = serializers.ChoiceField(choices=MemoryKind.choices, required=False)
    tags = TagsField(required=False)
    created_after = UTCDateTimeField(required=False)
    created_before = UTCDateTimeField(required=False)
    metadata = serializers.DictField(required=False)

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > LIMITS["max_metadata_filters"]:
            raise serializers.ValidationError(
                f"at most {LIMITS['max_metadata_filters']} metadata conditions.", code="too_many")
        for key, item in value.items():
            if not isinstance(item, (str, int, float, bool)) or item is None:
                raise serializers.ValidationError(
                    f"metadata.{key}: filter values must be a string, number or boolean."
                )
        check_json_text(value)
        return value


RECALL_MODES = ["vector", "lexical", "hybrid"]


class RecallInput(StrictSerializer):
    query = TextField()
    k = serializers.IntegerField(min_value=1, max_value=LIMITS["max_k"], default=10)
    mode = serializers.ChoiceField(
        choices=RECALL_MODES, default=settings.MEMORYWEB_RECALL_MODE,
        help_text="vector: meaning (Chroma); lexical: keywords (SQL full text); "
        "hybrid: both, fused.")
    explain = serializers.BooleanField(
        default=False, help_text="Add each channel's raw score, rank and contribution per result, "
        "and the query as the lexical engine saw it.")
    filters = RecallFilters(required=False)
    namespace = serializers.SlugField(required=False, allow_blank=True)

    def validate_query(self, value: str) -> str:
        return _check_bytes(value, LIMITS["max_query_bytes"], "query")


def validate(serializer_class: type[serializers.Serializer], data: Any, *, partial: bool = False,
             prefix: str = "") -> dict[str, Any]:
    """Validate ``data`` or raise :class:`InvalidInput` naming the first bad field."""
    if not isinstance(data, dict):
        raise InvalidInput("expected a JSON object.", field=prefix or None)
    serializer = serializer_class(data=data, partial=partial)
    if not serializer.is_valid():
        field, message, code = flatten_validation_error(serializer.errors)
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        raise InvalidInput(message, field=field, code=code)
    return dict(serializer.validated_data)


class IngestAndRecallInput(MemoryInput):
    """A memory to store plus a recall; the query defaults to the memory's content."""

    query = TextField(required=False)
    k = serializers.IntegerField(min_value=1, max_value=LIMITS["max_k"], default=10)
    mode = serializers.ChoiceField(choices=RECALL_MODES, default=settings.MEMORYWEB_RECALL_MODE)
    explain = serializers.BooleanField(default=False)
    filters = RecallFilters(required=False)

    def validate_query(self, value: str) -> str:
        return _check_bytes(value, LIMITS["max_query_bytes"], "query")
