"""Query-string filters for memory lists (django-filter), shared by every list door."""

import datetime as dt

import django_filters
from django import forms
from django.db.models.functions import Coalesce
from django_filters.fields import IsoDateTimeField

from apps.memories.models import EventType, Memory, MemoryKind


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


#: When a memory happened: ``occurred_at``, else when it was stored (as recall's filters).
EVENT_TIME = Coalesce("occurred_at", "created_at")

#: ``?ordering=``: ties go by storing order, so a session's turns that share a timestamp
#: (one date for a whole session) still list in the order they were said.
ORDERINGS = {
    "created_at": ("created_at", "pk"),
    "-created_at": ("-created_at", "-pk"),
    "occurred_at": (EVENT_TIME.asc(), "created_at", "pk"),
    "-occurred_at": (EVENT_TIME.desc(), "-created_at", "-pk"),
}


class MemoryFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        for low, high in (("created_after", "created_before"), ("occurred_after", "occurred_before")):
            if cleaned.get(low) and cleaned.get(high) and cleaned[high] <= cleaned[low]:
                self.add_error(high, f"must be after {low}.")
        return cleaned


class MemoryFilter(django_filters.FilterSet):
    agent_id = django_filters.CharFilter()
    session_id = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=MemoryKind.choices)
    event_type = django_filters.ChoiceFilter(
        choices=EventType.choices, label="Conversation events of this type (kind=event: all "
        "of them)")
    tag = django_filters.CharFilter(method="filter_tag", label="Has this tag")
    created_after = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    occurred_after = UTCIsoDateTimeFilter(
        method="filter_occurred", label="Happened at or after (occurred_at, else created_at)")
    occurred_before = UTCIsoDateTimeFilter(
        method="filter_occurred", label="Happened before (occurred_at, else created_at)")
    ordering = django_filters.ChoiceFilter(
        choices=[(name, name) for name in ORDERINGS], method="filter_ordering",
        label="created_at / -created_at (default: newest stored first), occurred_at / "
        "-occurred_at (event time; a session's turns in conversation order)")

    class Meta:
        model = Memory
        form = MemoryFilterForm
        fields = ["agent_id", "session_id", "kind", "event_type", "tag", "created_after",
                  "created_before", "occurred_after", "occurred_before", "ordering"]

    def filter_tag(self, queryset, name, value):
        return queryset.filter(tag_rows__tag=value)

    def filter_occurred(self, queryset, name, value):
        lookup = "gte" if name == "occurred_after" else "lt"
        return queryset.alias(_event=EVENT_TIME).filter(**{f"_event__{lookup}": value})

    def filter_ordering(self, queryset, name, value):
        return queryset.order_by(*ORDERINGS[value])
