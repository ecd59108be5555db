"""Input shapes of the memory services, validated once for every door.

These DRF serializers are used by the service layer itself (not only by the REST
views), so the WebSocket, MCP, admin and command doors get the same checks and the
same error messages. The REST views reuse them for the OpenAPI schema.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core import conf
from apps.core.kinds import STORABLE_KINDS
from apps.core.validation import (
    INT64,
    MAX_METADATA_DEPTH,
    DateOrDateTimeField,
    StrictSerializer,
    TagsField,
    TextField,
    UTCDateTimeField,
    check_bytes,
    check_json_text,
    json_depth,
    validate,
)
from apps.memories.models import MemoryKind

#: ``MEMORYWEB_LIMITS`` read at each access (apps/core/conf.py); code in functions reads
#: ``conf.limits()``. A field declared below takes its bound once, when its class is made.
LIMITS = conf.SettingView("MEMORYWEB_LIMITS")


class MetadataField(serializers.JSONField):
    #: The schema: an object whose values nest at most this deep (apps/core/openapi.py).
    json_object_depth = MAX_METADATA_DEPTH

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("metadata must be a JSON object.")
        if json_depth(value) > MAX_METADATA_DEPTH:
            raise serializers.ValidationError(
                f"metadata nests deeper than {MAX_METADATA_DEPTH} levels.", code="too_deep")
        check_json_text(value)
        size = len(json.dumps(value, separators=(",", ":")).encode())
        limit = conf.limits().max_metadata_bytes
        if size > limit:
            raise serializers.ValidationError(
                f"metadata is {size} bytes; the limit is {limit}.",
                code="too_long",
            )
        return value


class MemoryInput(StrictSerializer):
    """One memory to store. ``namespace`` is only for system-admin keys."""

    content = TextField(trim_whitespace=True)
    kind = serializers.ChoiceField(
        choices=STORABLE_KINDS, default=MemoryKind.FACT, error_messages={
            "invalid_choice": '"{input}" is not a kind a memory is stored with; conversation '
                              'events (kind "event") come through POST /api/v1/events.'})
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
    occurred_at = UTCDateTimeField(
        required=False, allow_null=True, default=None,
        help_text="When what it records happened (e.g. the session's date); time filters and "
        "recency use it, falling back to created_at.")
    namespace = serializers.SlugField(required=False, allow_blank=True)

    #: A memory whose expiry has passed is never served: storing one would hand out an id
    #: that is 404 at once, and an edit to a past expiry is a delete in disguise. Imports
    #: keep what their source held (``ImportInput``); the retention job erases it.
    allow_past_expiry = False

    def validate_content(self, value: str) -> str:
        return check_bytes(value, conf.limits().max_content_bytes, "content")

    def validate_expires_at(self, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and not self.allow_past_expiry and value <= timezone.now():
            raise serializers.ValidationError("expires_at must be in the future.")
        return value

    def validate(self, attrs):
        if attrs.get("valid_from") and attrs.get("valid_until"):
            if attrs["valid_until"] <= attrs["valid_from"]:
                raise serializers.ValidationError({"valid_until": "must be after valid_from."})
        return attrs


class MemoryUpdate(MemoryInput):
    """Fields an edit may change; agent_id, session_id and namespace are provenance."""

    session_id = None
    namespace = None
    #: Every kind, "event" included: an event's edit may name its own kind (services refuse
    #: any change of it, and making a memory an event: access.check_kind).
    kind = serializers.ChoiceField(choices=MemoryKind.choices, default=MemoryKind.FACT)


class MemoryBatchInput(StrictSerializer):
    """The batch envelope; the service checks the size and each memory."""

    memories = serializers.ListField(child=serializers.JSONField())
    namespace = serializers.SlugField(required=False, allow_blank=True)


@extend_schema_field({
    "type": "object", "maxProperties": LIMITS["max_metadata_filters"],
    "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "boolean"},
                                       {"type": "number", "minimum": INT64[0],
                                        "maximum": INT64[1]}]},
    "description": "Metadata keys and the value each must equal (strings, numbers, booleans)."})
class MetadataFilterField(serializers.DictField):
    """``filters.metadata``: validated by RecallFilters.validate_metadata."""


class RecallFilters(StrictSerializer):
    agent_id = TextField(max_length=LIMITS["max_id_length"], required=False)
    session_id = TextField(max_length=LIMITS["max_id_length"], required=False)
    kind = serializers.ChoiceField(choices=MemoryKind.choices, required=False)
    tags = TagsField(required=False, help_text="Only memories with every one of these tags.")
    tags_any = TagsField(required=False, help_text="Only memories with at least one of these "
                         "tags (seed 003's tag filter).")
    created_after = UTCDateTimeField(required=False, help_text="Stored at or after.")
    created_before = UTCDateTimeField(required=False, help_text="Stored before.")
    occurred_after = UTCDateTimeField(
        required=False, help_text="Happened at or after (occurred_at, else created_at).")
    occurred_before = UTCDateTimeField(
        required=False, help_text="Happened before (occurred_at, else created_at).")
    after = DateOrDateTimeField(
        required=False, help_text="Seed 003's `after` mode: only memories that happened at or "
        "after this date (YYYY-MM-DD, midnight UTC) or date-time; the same as occurred_after.")
    valid_at = UTCDateTimeField(
        required=False, help_text="Only memories whose validity window (valid_from, "
        "valid_until) contains this moment. Default: now.")
    include_invalid = serializers.BooleanField(
        default=False, help_text="Also return memories outside their validity window.")
    include_superseded = serializers.BooleanField(
        default=False, help_text="Also return memories a consolidation superseded (merged "
        "into another: docs/lifecycle.md).")
    metadata = MetadataFilterField(required=False)

    def validate(self, attrs):
        if "after" in attrs:
            after = attrs.pop("after")
            if attrs.get("occurred_after") and attrs["occurred_after"] != after:
                raise serializers.ValidationError(
                    {"after": "give after or occurred_after, not both."})
            attrs["occurred_after"] = after
        if attrs.get("include_invalid") and attrs.get("valid_at"):
            raise serializers.ValidationError(
                {"valid_at": "valid_at and include_invalid contradict each other."})
        for low, high in (("created_after", "created_before"), ("occurred_after", "occurred_before")):
            if attrs.get(low) and attrs.get(high) and attrs[high] <= attrs[low]:
                raise serializers.ValidationError({high: f"must be after {low}."})
        return attrs

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        most = conf.limits().max_metadata_filters
        if len(value) > most:
            raise serializers.ValidationError(
                f"at most {most} metadata conditions.", code="too_many")
        for key, item in value.items():
            if not isinstance(item, (str, int, float, bool)) or item is None:
                raise serializers.ValidationError(
                    f"metadata.{key}: filter values must be a string, number or boolean."
                )
        check_json_text(value)
        return value


RECALL_MODES = list(conf.RECALL_MODES)
FUSION_METHODS = list(conf.FUSION_METHODS)
#: Fusion inputs: the two retrieval channels and the priors scored on their candidates.
FUSION_INPUTS = ("vector", "lexical", "recency", "importance", "strength", "rerank")


class RecallTuning(StrictSerializer):
    """Ranking knobs a request may set (over the namespace's and the server's defaults)."""

    mode = serializers.ChoiceField(
        choices=RECALL_MODES, required=False,
        help_text="vector: meaning (Chroma); lexical: keywords (SQL full text); hybrid: both, "
        "fused with recency and importance. Default: the namespace's, else the server's.")
    min_score = serializers.FloatField(
        required=False, allow_null=True, min_value=-1.0,
        help_text="Drop results scoring below this (hybrid 0..1, vector cosine, lexical BM25).")
    mmr_lambda = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0, max_value=1.0,
        help_text="MMR diversity: 1 = relevance only, lower trades relevance for variety; "
        "null = off.")
    rerank = serializers.BooleanField(
        required=False, help_text="Run the configured reranker (MEMORYWEB_RERANKER) on the "
        "candidates. Default: on when one is configured; true without one is a 400.")
    pad_to_k = serializers.BooleanField(
        required=False, help_text="Fill up to k with candidates no channel found any evidence "
        "for (score 0). Default false: such padding is left out.")


#: What ``as_of`` means wherever it is taken (recall, a memory's GET).
AS_OF_HELP = ("Answer as of this moment (date-time, normalised to UTC): what the namespace "
              "held then. Memories stored after it are left out and edited ones are shown "
              "at the version in force then; deleted and erased memories are gone. A moment "
              "after now means now.")


class RecallInput(RecallTuning):
    query = TextField()
    k = serializers.IntegerField(min_value=1, max_value=LIMITS["max_k"], default=10)
    explain = serializers.BooleanField(
        default=False, help_text="Add each channel's raw score, rank and contribution per result, "
        "and the query as the lexical engine saw it.")
    filters = RecallFilters(required=False)
    namespace = serializers.SlugField(required=False, allow_blank=True)
    include_shared = serializers.BooleanField(
        default=False, help_text="Also search every namespace that currently shares memories "
        "with this one (sharing grants); each result names its namespace.")
    as_of = UTCDateTimeField(
        required=False, help_text=AS_OF_HELP + " Memories edited since are ranked by their "
        "text then; the recall filters apply to their state then, and filters.valid_at "
        "defaults to as_of.")

    def validate_query(self, value: str) -> str:
        return check_bytes(value, conf.limits().max_query_bytes, "query")


class AsOfInput(StrictSerializer):
    """``?as_of=`` of a memory's GET (``services.get``)."""

    as_of = UTCDateTimeField(help_text=AS_OF_HELP)


class IngestAndRecallInput(MemoryInput, RecallTuning):
    """A memory to store plus a recall; the query defaults to the memory's content."""

    query = TextField(required=False)
    k = serializers.IntegerField(min_value=1, max_value=LIMITS["max_k"], default=10)
    explain = serializers.BooleanField(default=False)
    filters = RecallFilters(required=False)
    include_shared = serializers.BooleanField(default=False)

    def validate_query(self, value: str) -> str:
        return check_bytes(value, conf.limits().max_query_bytes, "query")


class FusionWeights(StrictSerializer):
    vector = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    lexical = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    recency = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    importance = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    strength = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    rerank = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
    session = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)


class RecallDefaults(RecallTuning):
    """A namespace's overrides of the server's recall settings (Namespace.recall_defaults)."""

    fusion = serializers.ChoiceField(choices=FUSION_METHODS, required=False)
    weights = FusionWeights(required=False)
    recency_half_life_days = serializers.FloatField(required=False, min_value=0.001)
    strength_half_life_days = serializers.FloatField(required=False, min_value=0.001)


def validate_recall_defaults(value: Any) -> dict[str, Any]:
    """A namespace's ``recall_defaults``, checked and normalised (plain JSON types)."""
    if value in (None, ""):
        return {}
    cleaned = validate(RecallDefaults, value, prefix="recall_defaults")
    if "weights" in cleaned:
        cleaned["weights"] = dict(cleaned["weights"])
    from apps.memories.recall import ranking  # ranking builds on the models, not on the schemas

    # Settings under which every recall would be empty are refused when saved, not found
    # out later from a tenant's empty results.
    ranking.check(ranking.options_for(_Defaults(cleaned), {}), cleaned, any_mode=True)
    return cleaned


class _Defaults:
    """Stands for a namespace with these recall_defaults (``ranking.options_for`` reads
    nothing else), so defaults are checked before they are saved."""

    def __init__(self, recall_defaults: dict[str, Any]):
        self.recall_defaults = recall_defaults
