"""Erasure requests in the admin: read-only here (reviewing, approving and executing them
get their own pages with the dashboard, issue 7; meanwhile the REST API does it)."""

from django.contrib import admin

from apps.core.admin import SuperuserOnlyAdmin
from apps.privacy.models import ErasureRequest


@admin.register(ErasureRequest)
class ErasureRequestAdmin(SuperuserOnlyAdmin):
    list_display = ["id", "namespace_slug", "state", "requested_by", "requested_at",
                    "decided_by", "executed_at", "certificate_sha256"]
    list_filter = ["state", "namespace_slug"]
    search_fields = ["id", "namespace_slug", "requested_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
