"""Output shapes of the key API: never the secret, except once on create and rotate."""

from rest_framework import serializers

from apps.tenancy.models import ApiKey


class ApiKeySerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.SerializerMethodField(help_text="active, expired or revoked")

    class Meta:
        model = ApiKey
        fields = ["id", "namespace", "prefix", "role", "agent_id", "name", "created_at",
                  "last_used_at", "expires_at", "revoked_at", "status"]
        read_only_fields = fields

    def get_status(self, key: ApiKey) -> str:
        from django.utils import timezone

        if key.revoked_at is not None:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return "expired"
        return "active"


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret: shown this once, never stored.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


def with_secret(key: ApiKey, raw: str) -> dict:
    return {**ApiKeySerializer(key).data, "key": raw}
