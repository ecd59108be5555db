"""The audit log in the admin: read-only, as everywhere (append-only by design)."""

from django.contrib import admin

from apps.audit.models import AuditEntry
from apps.core.admin import SuperuserOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(SuperuserOnlyAdmin):
    list_display = ["seq", "created_at", "operation", "actor", "namespace", "request_id"]
    list_filter = ["operation"]
    search_fields = ["actor", "namespace", "request_id", "operation"]
    ordering = ["-seq"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
