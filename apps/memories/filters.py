"""Query-string filters for memory lists (django-filter), shared by every list door."""

import django_filters

from apps.memories.models import Memory, MemoryKind


class MemoryFilter(django_filters.FilterSet):
    agent_id = django_filters.CharFilter()
    session_id = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=MemoryKind.choices)
    tag = django_filters.CharFilter(method="filter_tag", label="Has this tag")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Memory
        fields = ["agent_id", "session_id", "kind", "tag", "created_after", "created_before"]

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tag_rows__tag=value)
