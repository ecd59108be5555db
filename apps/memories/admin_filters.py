"""Sidebar filters of the dashboard's memory list, each scoped to the rows the person may see."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from apps.memories.models import MemoryTag

#: Choices offered by the agent and tag filters (the most frequent first).
FILTER_CHOICES = 50


class _ScopedFilter(admin.SimpleListFilter):
    """A filter whose choices come from the rows the person may see, never from others'."""

    def scope(self, request, model_admin):
        return model_admin.get_queryset(request)


class AgentFilter(_ScopedFilter):
    title = "agent"
    parameter_name = "agent"

    def lookups(self, request, model_admin):
        agents = (self.scope(request, model_admin).values("agent_id").annotate(n=Count("pk"))
                  .order_by("-n", "agent_id")[:FILTER_CHOICES])
        return [(row["agent_id"], f"{row['agent_id']} ({row['n']})") for row in agents]

    def queryset(self, request, queryset):
        return queryset.filter(agent_id=self.value()) if self.value() else queryset


class TagFilter(_ScopedFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = MemoryTag.objects.for_principal(model_admin.principal(request), model_admin.scope_action)
        rows = tags.values("tag").annotate(n=Count("pk")).order_by("-n", "tag")[:FILTER_CHOICES]
        return [(row["tag"], f"{row['tag']} ({row['n']})") for row in rows]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(pk__in=MemoryTag.objects.filter(tag=self.value()).values("memory_id"))


class ImportanceFilter(admin.SimpleListFilter):
    title = "importance"
    parameter_name = "importance"
    BANDS = {"high": (0.7, 1.01), "medium": (0.3, 0.7), "low": (0.0, 0.3)}

    def lookups(self, request, model_admin):
        return [("high", "high (≥ 0.7)"), ("medium", "medium"), ("low", "low (< 0.3)")]

    def queryset(self, request, queryset):
        if self.value() not in self.BANDS:
            return queryset
        low, high = self.BANDS[self.value()]
        return queryset.filter(importance__gte=low, importance__lt=high)


class DuplicateFilter(admin.SimpleListFilter):
    title = "near-duplicates"
    parameter_name = "duplicates"

    def lookups(self, request, model_admin):
        return [("copy", "resembles an older memory"), ("original", "has near-duplicates")]

    def queryset(self, request, queryset):
        if self.value() == "copy":
            return queryset.filter(near_duplicate_of__isnull=False)
        if self.value() == "original":
            return queryset.filter(near_duplicates__isnull=False).distinct()
        return queryset
