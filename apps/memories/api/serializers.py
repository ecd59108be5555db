"""Output shapes of the memory API (inputs live in apps.memories.schemas)."""

from rest_framework import serializers

from apps.memories.models import Memory, MemoryVersion


class MemorySerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Memory
        fields = [
            "id", "namespace", "content", "kind", "tags", "metadata", "agent_id", "session_id",
            "importance", "confidence", "created_at", "updated_at", "last_recalled_at",
            "access_count", "expires_at", "valid_from", "valid_until", "content_hash", "version",
        ]
        read_only_fields = fields


class RecallResultSerializer(MemorySerializer):
    score = serializers.FloatField(help_text="Cosine similarity to the query, -1..1.")

    class Meta(MemorySerializer.Meta):
        fields = [*MemorySerializer.Meta.fields, "score"]
        read_only_fields = fields


class RecallResponseSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    query = serializers.CharField()
    k = serializers.IntegerField()
    results = RecallResultSerializer(many=True)


class MemoryVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MemoryVersion
        fields = ["version", "changed_by", "changed_at", "changes"]


class BatchResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = MemorySerializer(many=True)


class IngestAndRecallResponseSerializer(serializers.Serializer):
    memory = MemorySerializer()
    results = RecallResultSerializer(many=True)


class DeleteCountSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
