"""The audit log in the admin: read-only, as everywhere (append-only by design)."""

from django.contrib import admin

from apps.audit.models import AuditEntry
from apps.core.admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "operation", "actor", "namespace", "request_id"]
    list_filter = ["operation"]
    search_fields = ["actor", "namespace", "request_id", "operation"]
    ordering = ["-seq"]
