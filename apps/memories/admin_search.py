"""Keyword search in the dashboard's memory list: the keyword index, never ``LIKE``."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Case, IntegerField, Value, When

from apps.memories import services

#: Keyword matches considered by a search (per namespace, then merged).
SEARCH_LIMIT = 1000


class MemorySearchMixin:
    """``get_search_results`` and the content column for :class:`apps.memories.admin.MemoryAdmin`."""

    @admin.display(description="content")
    def snippet(self, obj):
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")

    def get_search_results(self, request, queryset, search_term):
        """Keyword-index matches in the person's namespaces; best first unless sorted."""
        if not search_term.strip():
            return queryset, False
        namespace_ids = list(queryset.values_list("namespace_id", flat=True).distinct())
        ids = services.keyword_matches(self.principal(request), search_term, SEARCH_LIMIT,
                                       namespace_ids=namespace_ids)
        queryset = queryset.filter(pk__in=ids)
        if "o" not in request.GET and ids:  # no column sort chosen: keep the index's order
            rank = Case(*[When(pk=pk, then=Value(i)) for i, pk in enumerate(ids)],
                        output_field=IntegerField())
            queryset = queryset.annotate(search_rank=rank).order_by("search_rank")
        return queryset, False
