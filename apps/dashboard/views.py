"""Dashboard pages beyond CRUD, in the admin's look: namespace overview, recall
playground and the live feed. Each acts as the logged-in person's Principal through the
service layer and lists only the namespaces that person manages (system admins: all)."""

from __future__ import annotations

import datetime as dt
import json
import secrets

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.dashboard.charts import bar_chart, line_chart
from apps.memories import services, sharing
from apps.memories.models import IndexOutbox, Memory, MemoryKind, RecallDay
from apps.memories.schemas import RECALL_MODES
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.people import principal_for

#: Days shown by the overview's charts (?days= may choose 7..365).
DEFAULT_DAYS = 30
MIN_DAYS, MAX_DAYS = 7, 365


def _namespaces(request):
    return Namespace.objects.for_principal(principal_for(request), Action.MANAGE).order_by("slug")


def _page(request, template: str, title: str, **context) -> TemplateResponse:
    from django.contrib import admin

    return TemplateResponse(request, template, {**admin.site.each_context(request),
                                                "title": title, **context})


def system_admin_only(request, title: str, verb: str, why: str, ask: str):
    """The person's principal, or a 403 page in the dashboard's look for someone who is no
    system admin (a team admin): "``title`` ``verb`` for system admins", ``why`` only a
    system admin may, ``ask`` what to do instead; it names their roles and leads back to
    the dashboard (no dead end)."""
    from apps.dashboard.no_access import held_roles

    principal = principal_for(request)
    if principal is not None and principal.is_system_admin:
        return principal
    response = _page(request, "dashboard/system_only.html", title, verb=verb, why=why,
                     ask=ask, roles=held_roles(principal))
    response.status_code = 403
    return response


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
        growth.append((day, running))
    recalls = dict(RecallDay.objects.filter(namespace=namespace, day__gte=start)
                   .values_list("day", "count"))
    recall_points = [(day, recalls.get(day, 0)) for day, _ in growth]
    outbox = IndexOutbox.objects.filter(namespace=namespace).aggregate(
        n=Count("pk"), oldest=Min("created_at"))
    axes = {"today": today, "label_every": max(days // 6, 1), "x_label": "Day (UTC)"}
    return {
        "total": total,
        "stored_in_window": sum(per_day.values()),
        "recalls_in_window": sum(recalls.values()),
        # Memories held now, by the day they were stored: a deleted memory leaves no
        # trace to place it on the days it existed (docs/dashboard.md says so).
        "growth_chart": line_chart(growth, title=f"Memories held, by day stored ({days} days)",
                                   y_label="Memories held", **axes),
        "new_chart": bar_chart([(day, per_day.get(day, 0)) for day, _ in growth],
                               title=f"New memories per day, last {days} days",
                               y_label="New memories", **axes),
        "recall_chart": bar_chart(recall_points, title=f"Recalls per day, last {days} days",
                                  y_label="Recalls", **axes),
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


#: Where the playground keeps the last recall's outcome between its POST and the GET it
#: redirects to: ids, scores and the form's input, never memory content (an erasure
#: must not miss a copy), so showing it again reads the memories afresh.
PLAYGROUND_SESSION_KEY = "mw_playground"


def playground(request):
    """Type a query, pick a namespace and filters, see ranked results with the explain
    breakdown per channel (the same recall service and numbers as the REST API).

    The recall runs on POST only, then redirects (POST-redirect-GET): a recall is
    counted (statistics, access counts, events, read audit), so a reload or a link must
    never run one. The GET shows the outcome kept in the session without recalling."""
    namespaces = list(_namespaces(request))
    if request.method == "POST":
        form = PlaygroundForm(namespaces, request.POST)
        if form.is_valid():
            token = secrets.token_urlsafe(8)
            request.session[PLAYGROUND_SESSION_KEY] = {
                "token": token, "input": {name: form.data.get(name, "") for name in form.fields},
                **_run_recall(request, form)}
            return HttpResponseRedirect(f"{request.path}?shown={token}")
        return _page(request, "dashboard/playground.html", "Recall playground", form=form)
    kept = request.session.get(PLAYGROUND_SESSION_KEY) or {}
    if request.GET.get("shown") and kept.get("token") == request.GET["shown"]:
        form = PlaygroundForm(namespaces, initial=kept["input"])
        context = _shown(request, kept)
    else:  # a link may fill the form in (?query=...); it still takes a click to recall
        form = PlaygroundForm(namespaces, initial={name: request.GET[name] for name in
                                                   PlaygroundForm.base_fields if name in request.GET})
        context = {"expired": bool(request.GET.get("shown"))}
    return _page(request, "dashboard/playground.html", "Recall playground", form=form, **context)


def _run_recall(request, form: PlaygroundForm) -> dict:
    """The recall, as kept in the session: the error, or ids, scores and explain parts."""
    try:
        result = services.recall(principal_for(request), form.recall_input(),
                                 namespace=form.cleaned_data["namespace"])
    except ServiceError as exc:
        return {"error": exc.message}
    return {"namespace": result.namespace.slug, "mode": result.mode,
            "lexical_query": result.lexical_query, "lexical_dropped": list(result.lexical_dropped),
            # Through JSON: the session keeps JSON, and scores may be NumPy floats.
            "hits": json.loads(json.dumps([
                {"id": str(hit.memory.pk), "score": hit.score, "shared": hit.shared,
                 "parts": hit.parts} for hit in result.hits], default=float))}


def _shown(request, kept: dict) -> dict:
    """The kept outcome with its memories read again, as the person may see them now: a
    memory deleted, erased or no longer shared since is left out (and counted)."""
    if "error" in kept:
        return {"error": kept["error"]}
    principal = principal_for(request)
    ids = [hit["id"] for hit in kept["hits"]]
    found = {str(m.pk): m for m in Memory.objects.live().for_principal(principal)
             .filter(pk__in=ids).select_related("namespace")}
    shared = sharing.shared_with(principal)
    if shared is not None and len(found) < len(ids):
        found.update({str(m.pk): m for m in Memory.objects.live().filter(shared, pk__in=ids)
                      .select_related("namespace")})
    hits = [hit for hit in kept["hits"] if hit["id"] in found]
    channels = sorted({name for hit in hits for name in hit["parts"]})
    return {"result": kept, "channels": channels, "gone": len(ids) - len(hits), "rows": [
        {"memory": found[hit["id"]], "score": hit["score"], "shared": hit["shared"],
         "parts": [(name, hit["parts"].get(name)) for name in channels]} for hit in hits]}


#: Events kept while the feed is paused; beyond it the oldest are dropped (and counted).
LIVE_BUFFER_CAP = 500
#: The event types of the live feed (apps/live/schema.json), in the order offered.
LIVE_EVENTS = ("created", "updated", "deleted", "recalled")
#: At most this many agents are offered in the feed's agent filter up front (more are
#: added as their events arrive).
LIVE_AGENT_CHOICES = 200


def live_feed(request):
    """Events arriving over the WebSocket (/ws/v1/live, with the person's session) as
    agents write and recall in a namespace the person manages.

    Filtering (event types, agent) and pausing happen in the browser on the stream
    (static/dashboard/live.js): the protocol's ``events`` request takes a namespace
    only, and API clients keep it unchanged. ``?event=`` (repeatable) and ``?agent=``
    preset the filters, so a filtered view can be linked."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    agents: list[str] = []
    if namespace is not None:
        from_memories = (Memory.objects.filter(namespace=namespace).order_by("agent_id")
                         .values_list("agent_id", flat=True).distinct()[:LIVE_AGENT_CHOICES])
        from_keys = (ApiKey.objects.filter(namespace=namespace).exclude(agent_id="")
                     .values_list("agent_id", flat=True).distinct()[:LIVE_AGENT_CHOICES])
        agents = sorted({*from_memories, *from_keys})[:LIVE_AGENT_CHOICES]
    chosen_events = [e for e in request.GET.getlist("event") if e in LIVE_EVENTS] or list(LIVE_EVENTS)
    agent = request.GET.get("agent", "")
    if agent and agent not in agents:
        agents.append(agent)
    return _page(request, "dashboard/live.html", "Live feed", namespaces=namespaces,
                 namespace=namespace, agents=agents, agent=agent, live_events=LIVE_EVENTS,
                 chosen_events=chosen_events, buffer_cap=LIVE_BUFFER_CAP)
