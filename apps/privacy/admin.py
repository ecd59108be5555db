"""Erasure requests in the admin: read-only here (reviewing, approving and executing them
get their own pages with the dashboard, issue 7; meanwhile the REST API does it)."""

from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.privacy.models import ErasureRequest


@admin.register(ErasureRequest)
class ErasureRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "namespace_slug", "state", "requested_by", "requested_at",
                    "decided_by", "executed_at", "certificate_sha256"]
    list_filter = ["state", "namespace_slug"]
    search_fields = ["id", "namespace_slug", "requested_by"]
