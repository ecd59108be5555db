"""Sidebar filters of the dashboard's memory list, each scoped to the rows the person may see."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.db.models.fields.json import KeyTransform

from apps.memories import sealing
from apps.memories.models import MemoryTag
from apps.memories.subjects import SUBJECT_KEY, naming_subject
from apps.tenancy.admin_base import NamespaceFilter, namespace_id_param

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
        # The tag rows of the namespaces the list shows: the person's (all for a system
        # admin), or the one the namespace filter picks. A tag row's namespace is its
        # memory's, so the list's rows are the same; by tag alone the filter's subquery
        # read every namespace's tag rows, the (namespace, tag) index unused.
        self.tag_rows = MemoryTag.objects.for_principal(model_admin.principal(request),
                                                        model_admin.scope_action)
        rows = (self.tag_rows.values("tag").annotate(n=Count("pk"))
                .order_by("-n", "tag")[:FILTER_CHOICES])
        # read as NamespaceFilter reads it (not a number: it shows no rows at all)
        picked = namespace_id_param(request.GET.get(NamespaceFilter.parameter_name))
        if picked is not None:
            self.tag_rows = self.tag_rows.filter(namespace_id=picked)
        return [(row["tag"], f"{row['tag']} ({row['n']})") for row in rows]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(pk__in=self.tag_rows.filter(tag=self.value()).values("memory_id"))


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


# --- Lookup filters (issue 17, item 2): a data subject, any metadata key -------------------

class _InputFilter(admin.SimpleListFilter):
    """A filter typed into a box (``input_filter.html``), with optional listed choices.

    The box is a GET form carrying the list's other parameters along, so typing a value
    keeps the search and the other filters. Shown even when nothing is listed.
    """

    template = "admin/memories/memory/input_filter.html"
    placeholder = ""

    def has_output(self) -> bool:
        return True

    def lookups(self, request, model_admin):
        return []

    def choices(self, changelist):
        yield {"form": True, "parameter": self.parameter_name, "value": self.value() or "",
               "placeholder": self.placeholder,
               "hidden": sorted((name, value) for name, value in changelist.params.items()
                                if name != self.parameter_name)}
        yield {"selected": self.value() is None, "display": "All",
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}
        for value, label in self.lookup_choices:
            yield {"selected": self.value() == str(value), "display": label,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}


class SubjectFilter(_InputFilter):
    """The memories export and erasure would take for a data subject; the most frequent
    subject ids among the rows the person may see are listed (never another tenant's)."""

    title = f"data subject ({SUBJECT_KEY})"
    parameter_name = SUBJECT_KEY
    placeholder = "subject id"

    def lookups(self, request, model_admin):
        key = f"metadata__{SUBJECT_KEY}"
        rows = (model_admin.get_queryset(request).filter(metadata__has_key=SUBJECT_KEY)
                .values(key).annotate(n=Count("pk")).order_by("-n", key)[:FILTER_CHOICES])
        return [(str(row[key]), f"{row[key]} ({row['n']})") for row in rows
                if isinstance(row[key], str | int) and not isinstance(row[key], bool)]

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        return queryset.filter(pk__in=naming_subject(
            value, queryset.order_by().values("namespace_id").distinct()).values("pk"))


class MetadataFilter(_InputFilter):
    """``key=value``: metadata ``key`` equal to ``value`` (as text, or the number, true,
    false or null it spells); ``key`` alone: memories that have the key."""

    title = "metadata (key=value)"
    parameter_name = "metadata"
    placeholder = "key=value"

    def queryset(self, request, queryset):
        text = (self.value() or "").strip()
        if not text:
            return queryset
        key, given, raw = (part.strip() for part in text.partition("="))
        if not key or len(key) > 128:
            messages.warning(request, "The metadata filter takes key=value (for example "
                             "ticket=T-42) or a key alone.")
            return queryset.none()
        if not given:  # an encrypted namespace's keys are in metadata_blind, readable
            return queryset.filter(Q(metadata__has_key=key) | Q(metadata_blind__has_key=key))
        values: list[Any] = [raw]
        try:
            spelled = json.loads(raw)
        except ValueError:
            spelled = raw
        if spelled is None or isinstance(spelled, bool | int | float):
            values.append(spelled)
        match = Q()
        for value in values:
            match |= Q(metadata_value=value)
        _, blind = sealing.blind_match(  # sealed metadata: the values' blind tokens
            "metadata_token__in", values, queryset.order_by().values("namespace_id").distinct())
        return queryset.alias(metadata_value=KeyTransform(key, "metadata"),
                              metadata_token=KeyTransform(key, "metadata_blind")).filter(
            (Q(metadata__has_key=key) & match) | blind)
