"""Output shapes of the key API: never the secret, except once on create and rotate."""

from rest_framework import serializers

from apps.tenancy.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked")
    superseded_by = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The id of the key that replaced this one (rotation).")

    class Meta:
        model = ApiKey
        fields = ["id", "namespace", "prefix", "role", "agent_id", "name", "created_at",
                  "last_used_at", "expires_at", "revoked_at", "status", "superseded_by",
                  "rotated_at", "grace_ends_at"]
        read_only_fields = fields


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret: shown this once, never stored.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


def with_secret(key: ApiKey, raw: str) -> dict:
    return {**ApiKeySerializer(key).data, "key": raw}
