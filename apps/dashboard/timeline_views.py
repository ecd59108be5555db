"""The dashboard's timeline page (issue 20, item 7): a namespace's rollups drilled down
year → month → week → day (→ segment), each node's summary parts with their grips, and
each grip opening its source (the memory's page, and the session view at that event).

Reading goes through the timeline's services (``browse``, ``open_node``), which check the
person may read the namespace; the dashboard is for people who *manage* it, so each page
also checks the namespace is among the person's managed ones (system admins: all) and
answers 404 otherwise, as for another tenant. The rebuild runs the timeline's ``build``
in the request after a confirmation page (the timeline app has no per-namespace job to
queue; its ``build_rollups`` job builds every due namespace on its schedule), and is
audited with the person who asked beside the build's own per-node entries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from apps.audit.log import record as audit
from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.core.kinds import MemoryKind
from apps.dashboard.views import _chosen, _namespaces, _page
from apps.memories import services as memory_services
from apps.memories.models import Memory
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.models import Namespace
from apps.tenancy.people import principal_for
from apps.tenancy.services import AGENT_ID_RE
from apps.timeline import services
from apps.timeline.models import Grip, Level, NodeStatus, RollupNode, RollupState
from apps.timeline.namespace_setting import schedule_of
from apps.timeline.tasks import scheduled

#: Years listed on a timeline's first page (a namespace rarely spans more).
MAX_YEARS = 50
#: The trees (the namespace's and its agents') offered in the picker.
MAX_TREES = 50
#: Ancestors walked for the trail above a node: segment → day → week → month → year.
MAX_DEPTH = 4
DASH = "\u2013"  # an en dash, between the ends of a period
#: The next level down, for the words under a node ("3 weeks").
CHILD_LEVEL = {Level.YEAR: "month", Level.MONTH: "week", Level.WEEK: "day", Level.DAY: "segment"}


def period_label(node: RollupNode) -> str:
    """A node's period in words, in UTC: "2024", "March 2024", "Week 10, 2024 (4 Mar - 10
    Mar)", "Tue 5 Mar 2024", "Tue 5 Mar 2024, 09:00-09:40 · session s1" (en dashes)."""
    start = node.start.astimezone(dt.UTC)
    if node.level == Level.YEAR:
        return f"{start:%Y}"
    if node.level == Level.MONTH:
        return f"{start:%B %Y}"
    if node.level == Level.WEEK:
        year, week, _ = start.isocalendar()
        last = (node.end.astimezone(dt.UTC) - dt.timedelta(days=1))
        return f"Week {week}, {year} ({start.day} {start:%b} {DASH} {last.day} {last:%b})"
    if node.level == Level.DAY:
        return f"{start:%a} {start.day} {start:%b %Y}"
    end = node.end.astimezone(dt.UTC)
    session = f"session {node.session_id}" if node.session_id else "no session"
    return f"{start:%a} {start.day} {start:%b %Y}, {start:%H:%M}{DASH}{end:%H:%M} · {session}"


def timeline_url(namespace: Namespace, agent_id: str = "", **more: Any) -> str:
    query = {"namespace": namespace.slug, **({"agent": agent_id} if agent_id else {}), **more}
    return f"{reverse('admin:timeline')}?{urlencode(query)}"


def session_url(namespace_slug: str, memory: Memory) -> str:
    """The session view at this memory's page, scrolled to it (empty: no session)."""
    if not memory.session_id:
        return ""
    query = urlencode({"namespace": namespace_slug, "at": str(memory.pk)})
    return f"{reverse('admin:session', args=[memory.session_id])}?{query}#m-{memory.pk}"


@dataclass
class GripRow:
    grip: Grip
    memory: Memory
    memory_url: str
    session_url: str


@dataclass
class Part:
    index: int
    text: str
    grips: list[GripRow] = field(default_factory=list)


def _agent(request: HttpRequest) -> str:
    """``?agent=``: an agent's own timeline; a value that cannot be an agent id is said and
    ignored (the namespace's timeline is shown)."""
    agent = request.GET.get("agent", "").strip()
    if agent and not AGENT_ID_RE.match(agent):
        messages.warning(request, "Showing the namespace's timeline: ?agent= is not an agent id "
                         "(letters, digits, '_', '.', '@', '-').")
        return ""
    return agent


def _trees(namespace: Namespace, agent_id: str) -> tuple[list[str], RollupState | None]:
    """The timelines built in the namespace ("" first: the whole namespace's), and the
    chosen one's build state (its last run). One query: a tree's ``RollupState`` row.
    Read here because the timeline's services have no listing of trees."""
    states = list(RollupState.objects.filter(namespace=namespace).order_by("agent_id")[:MAX_TREES])
    agents = [state.agent_id for state in states if state.agent_id]
    if agent_id and agent_id not in agents:
        agents.append(agent_id)
    state = next((s for s in states if s.agent_id == agent_id), None)
    return ["", *agents], state


def _trail(node: RollupNode) -> list[RollupNode]:
    """The node's ancestors, the year first: at most four parents, one query each.
    (``open_node`` gives a node's children, not its parents.)"""
    trail: list[RollupNode] = []
    parent_id = node.parent_id
    while parent_id and len(trail) < MAX_DEPTH:
        parent = RollupNode.objects.filter(pk=parent_id, namespace_id=node.namespace_id).first()
        if parent is None:
            break
        trail.append(parent)
        parent_id = parent.parent_id
    return trail[::-1]


def _parts(node: RollupNode, grips: list[Grip], slug: str) -> tuple[list[Part], list[GripRow]]:
    """The summary's parts in order, each with the grips that support it (the grips'
    memories came with them from ``open_node``); grips naming no current part aside."""
    parts = [Part(i, text) for i, text in enumerate(node.parts or [])]
    if not parts and node.summary:
        parts = [Part(i, text) for i, text in enumerate(node.summary.split("\n"))]
    loose: list[GripRow] = []
    for grip in grips:
        row = GripRow(grip, grip.memory,
                      reverse("admin:memories_memory_change", args=[grip.memory_id]),
                      session_url(slug, grip.memory))
        (parts[grip.part].grips if grip.part < len(parts) else loose).append(row)
    return parts, loose


def timeline(request: HttpRequest) -> HttpResponse:
    """``?namespace=&agent=``: the years of a timeline; ``?node=``: one node, its trail,
    its summary parts with grips, and its children; ``?day=YYYY-MM-DD``: that day's node."""
    namespaces = _namespaces(request)
    principal = principal_for(request)
    if request.GET.get("node"):
        return _node_page(request, namespaces, request.GET["node"])
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    context: dict[str, Any] = {"namespaces": namespaces, "namespace": namespace}
    if namespace is None:
        return _page(request, "dashboard/timeline.html", "Timeline", **context)
    agent = _agent(request)
    params = {"namespace": namespace.slug, **({"agent_id": agent} if agent else {})}
    if request.GET.get("day"):
        try:
            day = services.browse(principal, {**params, "level": Level.DAY,
                                              "from": request.GET["day"], "to": request.GET["day"]}
                                  ).first()
        except ServiceError:
            day = None
        if day is None:
            messages.info(request, f"No day node for {request.GET['day'][:10]}: showing the years.")
        else:
            return HttpResponseRedirect(timeline_url(namespace, node=str(day.pk)))
    trees, state = _trees(namespace, agent)
    tree_query = {"namespace": namespace.slug, **({"agent": agent} if agent else {})}
    years = list(services.browse(principal, {**params, "level": Level.YEAR})[:MAX_YEARS])
    context.update({
        "agent": agent, "trees": trees, "state": state,
        "children": [(year, period_label(year)) for year in years],
        "scheduled": scheduled(namespace), "schedule": schedule_of(namespace),
        "rebuild_url": f"{reverse('admin:timeline_rebuild')}?{urlencode(tree_query)}",
    })
    return _page(request, "dashboard/timeline.html", f"Timeline of {namespace.slug}", **context)


def _node_page(request: HttpRequest, namespaces, node_id: str) -> HttpResponse:
    """One node. Another tenant's node, or one of a namespace the person only reads, is a
    404 (the service's scoping, then the dashboard's managed namespaces)."""
    try:
        opened = services.open_node(principal_for(request), node_id)
    except ServiceError:
        raise Http404("timeline node not found") from None
    node = opened.node
    namespace = namespaces.filter(pk=node.namespace_id).first()
    asked = request.GET.get("namespace")
    if namespace is None or (asked and asked != namespace.slug):
        raise Http404("timeline node not found")
    parts, loose = _parts(node, opened.grips, namespace.slug)
    trail = _trail(node)
    return _page(
        request, "dashboard/timeline.html",
        f"{node.level.capitalize()} {period_label(node)}",
        namespaces=namespaces, namespace=namespace, agent=node.agent_id, node=node,
        node_label=period_label(node), trail=[(n, period_label(n)) for n in trail],
        children=[(child, period_label(child)) for child in opened.children],
        child_level=CHILD_LEVEL.get(node.level, ""), parts=parts, loose=loose,
        root_url=timeline_url(namespace, node.agent_id),
        memory_url=(reverse("admin:memories_memory_change", args=[node.memory_id])
                    if node.memory_id else ""),
        day_sessions=_day_sessions(node, opened.children, namespace.slug),
        pending=node.status != NodeStatus.OK)


def _day_sessions(node: RollupNode, children: list[RollupNode], slug: str) -> list[tuple[str, str]]:
    """A day's (or segment's) sessions, each with its session view's address."""
    if node.level not in (Level.DAY, Level.SEGMENT):
        return []
    ids = [node.session_id] if node.level == Level.SEGMENT else [c.session_id for c in children]
    seen = dict.fromkeys(sid for sid in ids if sid)
    return [(sid, f"{reverse('admin:session', args=[sid])}?{urlencode({'namespace': slug})}")
            for sid in seen]


def timeline_rebuild(request: HttpRequest) -> HttpResponse:
    """Build a namespace's timeline now (``?full=1``: summarise every node again), after a
    confirmation page; the confirming POST runs ``build`` in the request, records who asked
    (``timeline.build_requested``) and returns to the timeline with the outcome."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    if namespace is None:
        raise Http404("namespace not found")
    agent = _agent(request)
    full = request.GET.get("full") == "1"
    back = timeline_url(namespace, agent)
    tree = f"{namespace.slug}{' (agent ' + agent + ')' if agent else ''}"
    if not confirmed(request):
        return _confirm(request, namespace, agent, full, back, tree)
    report, error = None, ""
    try:
        report = services.build(namespace, agent_id=agent, rebuild=full)
    except EmbeddedStoreBusy as exc:
        error = str(exc)
    finally:
        _audit(principal_for(request), namespace, agent, full, report, error)
    _say(request, report, error, tree)
    return HttpResponseRedirect(back)


def _audit(principal, namespace: Namespace, agent: str, full: bool, report, error: str) -> None:
    """Who asked for the build, and its outcome in counts (the build's own entries, one per
    node written, are the system's): recorded even when the build raised."""
    outcome: dict[str, Any] = {"error": "vector store busy" if error else "failed"}
    if report is not None:
        outcome = {"built": dict(report.built), "unchanged": report.unchanged,
                   "removed": report.removed, "waiting": report.waiting,
                   "failed": len(report.failed), "skipped": report.skipped}
    with transaction.atomic():
        audit(principal, "timeline.build_requested", namespace=namespace,
              summary={"agent_id": agent, "rebuild": full, "via": "dashboard", **outcome})


def _confirm(request: HttpRequest, namespace: Namespace, agent: str, full: bool, back: str,
             tree: str) -> HttpResponse:
    from django.contrib import admin

    memories = memory_services.list_memories(principal_for(request), namespace.slug,
                                             include_superseded=True).exclude(
        kind=MemoryKind.SUMMARY)
    if agent:
        memories = memories.filter(agent_id=agent)
    count = memories.count()
    effect = (f"Summarise every period of the timeline of {tree} again, now"
              if full else f"Bring the timeline of {tree} up to date now")
    details = [
        f"It reads {plural(count, 'memory or event', 'memories and events')} "
        f"({'all of them' if full else 'only the days whose memories changed are summarised again'}).",
        "It runs while this page waits: a large namespace can take minutes (about 4 s for "
        "3,000 events in one day with the offline summariser).",
        "Each summary is replaced, not edited; erased text does not come back.",
        "The scheduled job build_rollups does the same for scheduled namespaces; "
        "manage.py rollup --namespace SLUG does it from a shell.",
    ]
    archived = namespace.archived_at is not None
    return confirmation_page(
        request, admin.site, title="Rebuild the timeline" if full else "Build the timeline",
        effect=effect + ".", button="Rebuild everything" if full else "Build now",
        cancel_url=back, details=details, can_confirm=not archived,
        error="This namespace is archived: its timeline is not built." if archived else None)


def _say(request: HttpRequest, report, error: str, tree: str) -> None:
    """The build's outcome as a message on the timeline page."""
    if report is None:
        messages.error(request, f"The timeline of {tree} was not built: {error}")
        return
    if report.skipped == "busy":
        messages.warning(request, f"Another build of the timeline of {tree} is running; "
                         "try again when it has finished.")
        return
    if report.skipped:
        messages.error(request, f"The timeline of {tree} was not built: the namespace is "
                       f"{report.skipped}.")
        return
    built = ", ".join(f"{n} {level}{'s' if n != 1 else ''}" for level, n in report.built.items())
    text = (f"Timeline of {tree} built: {built or 'nothing new'}; {report.unchanged} unchanged, "
            f"{report.removed} removed.")
    if report.failed:
        messages.warning(request, f"{text} {len(report.failed)} node(s) could not be summarised "
                         "and kept their previous version (build again to retry): "
                         f"{report.failed[0]['error']}")
    else:
        messages.success(request, text)
