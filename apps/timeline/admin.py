"""Rollup nodes in the dashboard, read-only: the timeline is derived data, changed only by
its builds and by erasure (people browse it on the dashboard's timeline page)."""

from __future__ import annotations

from django.contrib import admin

from apps.core.roles import Action
from apps.tenancy.admin_base import NamespaceFilter, ReadOnlyAdmin
from apps.timeline.models import Grip, RollupNode


class GripInline(admin.TabularInline):
    model = Grip
    fields = ["part", "excerpt", "memory"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RollupNode)
class RollupNodeAdmin(ReadOnlyAdmin):
    scope_action = Action.READ
    list_display = ["level", "start", "end", "namespace", "agent_id", "session_id",
                    "source_count", "status", "built_at"]
    list_filter = [NamespaceFilter, "level", "status"]
    list_select_related = ["namespace"]
    date_hierarchy = "start"
    ordering = ["-start", "level"]
    fields = ["namespace", "agent_id", "level", "start", "end", "session_id", "parent",
              "summary", "summarizer", "source_count", "status", "built_at", "memory",
              "input_digest"]
    readonly_fields = fields
    inlines = [GripInline]
