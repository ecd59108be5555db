"""Query-string filters for memory lists (django-filter), shared by every list door."""

import datetime as dt

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from apps.memories.models import Memory, MemoryKind


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC; out-of-range values are a 400, not a 500."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("date-time out of range.", code="invalid") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class MemoryFilter(django_filters.FilterSet):
    agent_id = django_filters.CharFilter()
    session_id = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=MemoryKind.choices)
    tag = django_filters.CharFilter(method="filter_tag", label="Has this tag")
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Memory
        fields = ["agent_id", "session_id", "kind", "tag", "created_after", "created_before"]

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tag_rows__tag=value)
