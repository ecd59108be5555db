"""Dashboard pages beyond CRUD, in the admin's look: namespace overview, recall
playground and the live feed. Each acts as the logged-in person's Principal through the
service layer and lists only the namespaces that person manages (system admins: all)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.dashboard.access import principal_for
from apps.dashboard.charts import bar_chart
from apps.memories import services
from apps.memories.models import IndexOutbox, Memory, MemoryKind, RecallDay
from apps.memories.schemas import RECALL_MODES
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.roles import Action

#: Days shown by the overview's charts (?days= may choose 7..365).
DEFAULT_DAYS = 30
MIN_DAYS, MAX_DAYS = 7, 365


def _namespaces(request):
    return Namespace.objects.for_principal(principal_for(request), Action.MANAGE).order_by("slug")


def _page(request, template: str, title: str, **context) -> TemplateResponse:
    from django.contrib import admin

    return TemplateResponse(request, template, {**admin.site.each_context(request),
                                                "title": title, **context})


def _chosen(request, namespaces, slug: str | None) -> Namespace | None:
    """The namespace named by ``slug`` among ``namespaces`` (404 if not there), or the
    first one when none is named."""
    if slug:
        namespace = namespaces.filter(slug=slug).first()
        if namespace is None:
            raise Http404("namespace not found")
        return namespace
    return namespaces.first()


def _days(request) -> int:
    """The overview's ``?days=``, kept within 7..365; an adjusted value is said on the
    page (a warning message) rather than silently replaced."""
    asked = request.GET.get("days")
    if asked is None or asked == "":
        return DEFAULT_DAYS
    try:
        wanted = int(asked)
    except ValueError:
        messages.warning(request, f"Showing {DEFAULT_DAYS} days: ?days= must be a whole number "
                         f"of days ({asked[:20]} was asked for).")
        return DEFAULT_DAYS
    days = min(max(wanted, MIN_DAYS), MAX_DAYS)
    if days != wanted:
        messages.warning(request, f"Showing {days} days: ?days= must be between {MIN_DAYS} and "
                         f"{MAX_DAYS} ({wanted} was asked for).")
    return days


def overview(request):
    """Memory count, growth over time, memories per agent, recalls per day, outbox backlog."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    days = _days(request)
    context = {"namespaces": namespaces, "namespace": namespace, "days": days}
    if namespace is not None:
        context.update(_overview_numbers(namespace, days))
    return _page(request, "dashboard/overview.html", "Namespace overview", **context)


def _overview_numbers(namespace: Namespace, days: int) -> dict:
    today = timezone.now().date()
    start = today - dt.timedelta(days=days - 1)
    start_at = dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC)
    memories = Memory.objects.filter(namespace=namespace)
    total = memories.count()
    per_day = dict(memories.filter(created_at__gte=start_at)
                   .annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values("day")
                   .annotate(n=Count("pk")).values_list("day", "n"))
    running = total - sum(per_day.values())  # stored before the window
    growth = []
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        running += per_day.get(day, 0)
        growth.append((day.isoformat(), running))
    recalls = dict(RecallDay.objects.filter(namespace=namespace, day__gte=start)
                   .values_list("day", "count"))
    recall_points = [((start + dt.timedelta(days=o)).isoformat(),
                      recalls.get(start + dt.timedelta(days=o), 0)) for o in range(days)]
    outbox = IndexOutbox.objects.filter(namespace=namespace).aggregate(
        n=Count("pk"), oldest=Min("created_at"))
    label_every = max(days // 6, 1)
    return {
        "total": total,
        "stored_in_window": sum(per_day.values()),
        "recalls_in_window": sum(recalls.values()),
        # Memories held now, by the day they were stored (deleted ones are not history).
        "growth_chart": bar_chart(growth, title=f"Memories held, by day stored ({days} days)",
                                  label_every=label_every),
        "recall_chart": bar_chart(recall_points, title=f"Recalls per day, last {days} days",
                                  label_every=label_every),
        "agents": memories.values("agent_id").annotate(n=Count("pk")).order_by("-n", "agent_id")[:20],
        "kinds": memories.values("kind").annotate(n=Count("pk")).order_by("-n"),
        "outbox": outbox["n"], "outbox_oldest": outbox["oldest"],
        "active_keys": ApiKey.objects.filter(namespace=namespace).active().count(),
    }


class PlaygroundForm(forms.Form):
    namespace = forms.ChoiceField()
    query = forms.CharField(max_length=settings.MEMORYWEB_LIMITS["max_query_bytes"],
                            widget=forms.TextInput(attrs={"size": 60, "autofocus": True}))
    mode = forms.ChoiceField(choices=[(m, m) for m in RECALL_MODES], initial="hybrid")
    k = forms.IntegerField(min_value=1, max_value=settings.MEMORYWEB_LIMITS["max_k"], initial=10)
    agent_id = forms.CharField(required=False, label="Agent")
    kind = forms.ChoiceField(required=False, choices=[("", "any"), *MemoryKind.choices])
    tags = forms.CharField(required=False, help_text="Comma-separated; a memory with any of them.")
    include_shared = forms.BooleanField(required=False, label="Include shared namespaces")

    def __init__(self, namespaces, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [(ns.slug, ns.slug) for ns in namespaces]

    def recall_input(self) -> dict:
        """The form as the recall service's input (what a REST client would send)."""
        data = self.cleaned_data
        filters = {name: data[name] for name in ("agent_id", "kind") if data[name]}
        tags = [t.strip() for t in data["tags"].split(",") if t.strip()]
        if tags:
            filters["tags"] = tags
        return {"query": data["query"], "mode": data["mode"], "k": data["k"], "explain": True,
                "include_shared": data["include_shared"], **({"filters": filters} if filters else {})}


def playground(request):
    """Type a query, pick a namespace and filters, see ranked results with the explain
    breakdown per channel (the same recall service and numbers as the REST API)."""
    namespaces = list(_namespaces(request))
    form = PlaygroundForm(namespaces, request.GET if "query" in request.GET else None)
    context = {"form": form}
    if form.is_bound and form.is_valid():
        try:
            result = services.recall(principal_for(request), form.recall_input(),
                                     namespace=form.cleaned_data["namespace"])
        except ServiceError as exc:
            context["error"] = exc.message
        else:
            channels = sorted({name for hit in result.hits for name in hit.parts})
            context.update(result=result, channels=channels, rows=[
                {"memory": hit.memory, "score": hit.score, "shared": hit.shared,
                 "parts": [hit.parts.get(name) for name in channels]} for hit in result.hits])
    return _page(request, "dashboard/playground.html", "Recall playground", **context)


def live_feed(request):
    """Events arriving over the WebSocket (/ws/v1/live, with the person's session) as
    agents write and recall in a namespace the person manages."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    return _page(request, "dashboard/live.html", "Live feed", namespaces=namespaces,
                 namespace=namespace)
