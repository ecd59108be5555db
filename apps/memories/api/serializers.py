"""Output shapes of the memory API (inputs live in apps.memories.schemas)."""

from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.openapi import ErrorDetailSerializer
from apps.memories.models import Memory, MemoryVersion
from apps.memories.schemas import MemoryInput


def _iso(value: datetime | None) -> str | None:
    """DRF's DateTimeField rendering: ISO 8601, UTC written as Z."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class MemorySerializer(serializers.ModelSerializer):
    """A memory as the API returns it.

    ``to_representation`` is written out by hand: DRF's generic path costs ~0.2 ms per
    row (field lookups and conversions), which dominated a recall's response time. The
    declared fields still drive the OpenAPI schema, and a test checks both renderings
    agree field for field.
    """

    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    def to_representation(self, m: Memory) -> dict[str, Any]:
        row = self._row(m)
        if m.shared_with_caller:  # the grantor's own statistics and links stay its own
            row.update(access_count=None, last_recalled_at=None, near_duplicate_of=None)
        return row

    @staticmethod
    def _row(m: Memory) -> dict[str, Any]:
        return {
            "id": str(m.pk), "namespace": m.namespace.slug, "content": m.content, "kind": m.kind,
            "tags": m.tags, "metadata": m.metadata, "agent_id": m.agent_id,
            "session_id": m.session_id, "importance": m.importance, "confidence": m.confidence,
            "created_at": _iso(m.created_at), "updated_at": _iso(m.updated_at),
            "last_recalled_at": _iso(m.last_recalled_at), "access_count": m.access_count,
            "expires_at": _iso(m.expires_at), "valid_from": _iso(m.valid_from),
            "valid_until": _iso(m.valid_until), "occurred_at": _iso(m.occurred_at),
            "near_duplicate_of": str(m.near_duplicate_of_id) if m.near_duplicate_of_id else None,
            "content_hash": m.content_hash, "version": m.version,
        }

    class Meta:
        model = Memory
        fields = [
            "id", "namespace", "content", "kind", "tags", "metadata", "agent_id", "session_id",
            "importance", "confidence", "created_at", "updated_at", "last_recalled_at",
            "access_count", "expires_at", "valid_from", "valid_until", "occurred_at",
            "near_duplicate_of", "content_hash", "version",
        ]
        read_only_fields = fields


class StoredMemorySerializer(MemorySerializer):
    """Schema only: what a store returns, MemorySerializer's row plus how dedup went."""

    duplicate = serializers.BooleanField(help_text="Nothing new was stored: identical content "
                                         "(or, under the skip policy, a near-duplicate) exists.")
    near_duplicate_similarity = serializers.FloatField(
        required=False, help_text="Cosine similarity to the near-duplicate found, when one was.")

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "duplicate", "near_duplicate_similarity"]
        read_only_fields = fields


def stored(memory: Memory) -> dict[str, Any]:
    """A stored (or deduplicated) memory as ingest answers it."""
    row = {**MemorySerializer(memory).data, "duplicate": memory.duplicate}
    if memory.near_duplicate_similarity is not None:
        row["near_duplicate_similarity"] = round(memory.near_duplicate_similarity, 6)
    return row


def hit_rows(hits, explain: bool = False) -> list[dict[str, Any]]:
    """Recall hits as every door returns them: the memory, ``score``, ``shared``, and
    with ``explain`` each channel's part. One serializer for the whole list: DRF builds
    a ModelSerializer's fields per instance, which cost more than the recall itself."""
    rows = MemorySerializer([hit.memory for hit in hits], many=True).data
    for row, hit in zip(rows, hits, strict=True):
        row["score"] = round(hit.score, 6)
        row["shared"] = hit.shared
        if explain:
            row["explain"] = hit.parts  # channel -> {raw, rank, contribution}
    return rows


class RecallResultSerializer(MemorySerializer):
    """Schema only: the recall view adds ``score`` to MemorySerializer's rows."""

    score = serializers.FloatField(help_text="Vector mode: cosine similarity; hybrid: fused 0..1.")
    shared = serializers.BooleanField(help_text="From another namespace through a sharing grant "
                                      "(include_shared); ``namespace`` names it. Read-only.")
    explain = serializers.DictField(required=False, help_text="With explain: per channel "
                                    "{raw, rank, contribution}; contributions add up to score.")

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
