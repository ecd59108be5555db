"""Output shapes of the memory API for the REST views and the OpenAPI schema (inputs
live in apps.memories.schemas).

The rows themselves come from :mod:`apps.memories.representation`, which every door
formats memories with; these serializers declare the fields for the schema and render
through it, and a test checks both agree (tests/memories/test_serialization.py).
"""

from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.openapi import ErrorDetailSerializer
from apps.memories import representation
from apps.memories.models import EventType, Memory, MemoryVersion
from apps.memories.recall import RecallHit
from apps.memories.results import Readable, StoredMemory
from apps.memories.schemas import MemoryInput


class MemorySerializer(serializers.ModelSerializer):
    """A memory as the API returns it: ``representation.memory_row`` (a ``SharedMemory``
    without the grantor's statistics). The declared fields drive the OpenAPI schema; a
    test checks DRF's generic rendering of them agrees field for field."""

    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    event_type = serializers.ChoiceField(
        choices=EventType.choices, allow_blank=True, read_only=True,
        help_text='A conversation event\'s type (kind "event"); "" for any other memory.')
    role = serializers.CharField(read_only=True, help_text="Who spoke in a conversation event "
                                 "(user, assistant, tool, system); \"\" for other memories.")

    def to_representation(self, item: Readable) -> dict[str, Any]:
        return representation.memory_row(item)

    class Meta:
        model = Memory
        fields = list(representation.MEMORY_FIELDS)
        read_only_fields = fields


class ConflictLinkSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    differs_in = serializers.ListField(child=serializers.CharField())


class StrengthPartSerializer(serializers.Serializer):
    value = serializers.FloatField(help_text="0..1")
    weight = serializers.FloatField()


class StrengthSerializer(serializers.Serializer):
    value = serializers.FloatField(help_text="0..1: the parts' weighted mean times the factors.")
    parts = serializers.DictField(child=StrengthPartSerializer(), help_text="importance, "
                                  "confidence, use, age, track (the source agent's record).")
    factors = serializers.DictField(child=serializers.FloatField(), help_text="superseded "
                                    "(0.1), conflicted (0.8), when they apply.")


class MemoryDetailSerializer(MemorySerializer):
    """``GET /api/v1/memories/{id}``: the row plus its consolidation lineage (null for a
    memory read through a sharing grant)."""

    derived_from = serializers.ListField(
        child=serializers.UUIDField(), allow_null=True,
        help_text="The memories merged into this one (now superseded by it).")
    conflicts_with = ConflictLinkSerializer(
        many=True, allow_null=True, help_text="Memories alike but for a number, a name, a "
        "date, a negation or an opposite word (docs/lifecycle.md).")
    strength = StrengthSerializer(allow_null=True, help_text="How much the memory still "
                                  "counts, with its parts (docs/lifecycle.md); null through a "
                                  "sharing grant.")

    def to_representation(self, item: Any) -> dict[str, Any]:
        return item  # the view builds the row

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "derived_from", "conflicts_with", "strength"]
        read_only_fields = fields


class StoredMemorySerializer(MemorySerializer):
    """What a store returns (a ``StoredMemory``): MemorySerializer's row plus how dedup
    went (``representation.stored_row``)."""

    duplicate = serializers.BooleanField(help_text="Nothing new was stored: identical content "
                                         "(or, under the skip policy, a near-duplicate) exists.")
    near_duplicate_similarity = serializers.FloatField(
        required=False, help_text="Cosine similarity to the near-duplicate found, when one was.")

    def to_representation(self, item: StoredMemory) -> dict[str, Any]:
        return representation.stored_row(item)

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "duplicate", "near_duplicate_similarity"]
        read_only_fields = fields


class RecallResultSerializer(MemorySerializer):
    """A recall hit (a ``RecallHit``): MemorySerializer's row plus ``score``, ``shared``
    and, with explain, each channel's part (``representation.hit_row``; the views call
    ``hit_rows`` with the request's explain)."""

    score = serializers.FloatField(help_text="Vector mode: cosine similarity; hybrid: fused 0..1.")
    shared = serializers.BooleanField(help_text="From another namespace through a sharing grant "
                                      "(include_shared); ``namespace`` names it. Read-only.")
    explain = serializers.DictField(required=False, help_text="With explain: per channel "
                                    "{raw, rank, contribution}; contributions add up to score.")

    def to_representation(self, item: RecallHit) -> dict[str, Any]:
        return representation.hit_row(item)

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "score", "shared", "explain"]
        read_only_fields = fields


class RecallResponseSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    query = serializers.CharField()
    k = serializers.IntegerField()
    mode = serializers.CharField()
    results = RecallResultSerializer(many=True)
    searched = serializers.ListField(child=serializers.CharField(), help_text="The namespaces "
                                     "searched: the caller's, then those sharing with it.")
    explain = serializers.DictField(required=False, help_text="With explain: mode, fusion method, "
                                    "weights and the query as the lexical engine saw it.")


class MemoryVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MemoryVersion
        fields = ["version", "changed_by", "changed_at", "changes"]


class BatchResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    created = serializers.IntegerField(help_text="New memories stored.")
    duplicates = serializers.IntegerField(help_text="Items whose content was already stored.")
    results = StoredMemorySerializer(many=True, help_text="In request order, each with duplicate.")


class IngestAndRecallResponseSerializer(serializers.Serializer):
    memory = StoredMemorySerializer()
    results = RecallResultSerializer(many=True)
    recall_error = ErrorDetailSerializer(required=False, help_text="Present when the memory was stored "
                                   "but the recall failed (vector index unavailable).")


class DeleteCountSerializer(serializers.Serializer):
    deleted = serializers.IntegerField(help_text="Memories deleted in all (every namespace).")
    namespaces = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Memories deleted per namespace slug (the named one, or each one that held "
        "the agent's memories with all_namespaces=true).")


class MemoryBatchRequestSerializer(serializers.Serializer):
    """Schema of the batch body (validation happens in the service, item by item)."""

    refuses_unknown_fields = True  # as schemas.MemoryBatchInput, which checks the body

    memories = MemoryInput(many=True, min_length=1, max_length=settings.MEMORYWEB_LIMITS["max_batch"],
                           help_text="1 to 1,000 memories, stored all or nothing.")
    namespace = serializers.SlugField(required=False, help_text="System-admin keys only.")


class EventRowSerializer(MemorySerializer):
    """A session's event as ``GET /api/v1/events`` lists it (``representation.event_row``):
    MemorySerializer's row plus the client's id for the event."""

    event_id = serializers.CharField(allow_null=True, help_text="The client's id for the event "
                                     "(the `id` it was posted with).")

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "event_id"]
        read_only_fields = fields


class StoredEventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The client's id for the event, as posted.")
    memory_id = serializers.UUIDField(help_text="The memory that holds the event.")
    created = serializers.BooleanField(help_text="Stored by this request (false: the id was "
                                       "already stored, or came earlier in the batch).")


class EventBatchResponseSerializer(serializers.Serializer):
    results = StoredEventSerializer(many=True, help_text="One per event, in request order.")
    stored = serializers.IntegerField(help_text="Events stored by this request.")
    existing = serializers.IntegerField(help_text="Events whose id was already stored.")
