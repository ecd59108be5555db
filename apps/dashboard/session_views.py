"""The dashboard's sessions (issue 20, item 7): an index of a namespace's recent sessions,
and one session's events and memories in conversation order, a page at a time.

Both read through ``apps.memories.services.list_memories`` (the person's scope, live
memories only) and order as ``GET /api/v1/events?session_id=`` does (event time, then
storing order). ``list_session_events`` is not used for the session view because it
leaves out the ordinary memories stored with the session's id, which the view shows
among the events; nor for the index, which no service offers (a grouped, paginated
query here). Pages are for people who manage the namespace, as the rest of the dashboard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import urlencode

from apps.core.kinds import MemoryKind
from apps.dashboard.views import _chosen, _namespaces, _page
from apps.memories import services
from apps.memories.filters import EVENT_TIME, ORDERINGS
from apps.memories.models import Memory
from apps.tenancy.people import principal_for

#: Events and memories per page of a session (sessions can hold thousands).
PAGE_SIZE = 100
#: Sessions per page of the index.
INDEX_PAGE_SIZE = 50
#: A text longer than this (characters or lines) is folded behind its first lines.
FOLD_CHARS, FOLD_LINES = 600, 12
#: What a folded text shows before it is opened.
PREVIEW_CHARS, PREVIEW_LINES = 240, 4
#: Event types whose text is machine output, shown in a monospace block.
TOOL_EVENTS = ("tool_call", "tool_result")


@dataclass
class Turn:
    memory: Memory
    at: object
    folded: bool
    preview: str
    tool: bool


def _turn(memory: Memory) -> Turn:
    text = memory.content
    folded = len(text) > FOLD_CHARS or text.count("\n") >= FOLD_LINES
    preview = "\n".join(text[:PREVIEW_CHARS].split("\n")[:PREVIEW_LINES]) if folded else ""
    return Turn(memory, memory.occurred_at or memory.created_at, folded, preview,
                memory.event_type in TOOL_EVENTS)


def _in_session(request: HttpRequest, slug: str, session_id: str) -> QuerySet[Memory]:
    """The session's live events and memories (summaries aside; superseded ones too: the
    session is a record), in conversation order."""
    return (services.list_memories(principal_for(request), slug, include_superseded=True)
            .filter(session_id=session_id).exclude(kind=MemoryKind.SUMMARY).order_by(*ORDERINGS["occurred_at"]))


def _page_of(rows: QuerySet[Memory], memory_id: str) -> int | None:
    """The page number holding ``memory_id`` in the session's order (two queries), or None
    when it is not in the session."""
    try:
        pk = uuid.UUID(memory_id)
    except ValueError:
        return None
    target = rows.filter(pk=pk).values("occurred_at", "created_at").first()
    if target is None:
        return None
    at, created = target["occurred_at"] or target["created_at"], target["created_at"]
    earlier = rows.annotate(t=EVENT_TIME).filter(
        Q(t__lt=at) | Q(t=at, created_at__lt=created) | Q(t=at, created_at=created, pk__lt=pk)
    ).count()
    return earlier // PAGE_SIZE + 1


def session(request: HttpRequest, session_id: str) -> HttpResponse:
    """``/admin/dashboard/sessions/<id>/?namespace=&page=&at=``: ``at`` (a memory id) opens
    the page holding that memory (the link from a grip or a memory's page adds ``#m-<id>``
    to scroll to it). A session with nothing the person may see is a 404."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    if namespace is None:
        raise Http404("session not found")
    rows = _in_session(request, namespace.slug, session_id)
    paginator = Paginator(rows, PAGE_SIZE)
    if paginator.count == 0:
        raise Http404("session not found")
    number = request.GET.get("page") or None
    at = request.GET.get("at", "")
    if number is None and at:
        number = _page_of(rows, at)
    page = paginator.get_page(number)
    span = rows.aggregate(first=Min(EVENT_TIME), last=Max(EVENT_TIME),
                          events=Count("pk", filter=~Q(event_type="")))
    here = f"{reverse('admin:session', args=[session_id])}?{urlencode({'namespace': namespace.slug})}"
    first_day = span["first"].date().isoformat() if span["first"] else ""
    return _page(
        request, "dashboard/session.html", f"Session {session_id}",
        namespaces=namespaces, namespace=namespace, session_id=session_id, page=page,
        turns=[_turn(memory) for memory in page.object_list], span=span, here=here, at=at,
        index_url=f"{reverse('admin:sessions')}?{urlencode({'namespace': namespace.slug})}",
        timeline_url=(f"{reverse('admin:timeline')}?"
                      f"{urlencode({'namespace': namespace.slug, 'day': first_day})}"
                      if first_day else ""))


def sessions(request: HttpRequest) -> HttpResponse:
    """``/admin/dashboard/sessions/?namespace=&q=&page=``: the namespace's sessions, the
    most recently active first, with their first and last time and how many events and
    memories each holds; ``q`` keeps the sessions whose id starts with it. One grouped
    query per page (plus its count)."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    context: dict = {"namespaces": namespaces, "namespace": namespace}
    if namespace is not None:
        prefix = request.GET.get("q", "").strip()[:128]
        memories = (services.list_memories(principal_for(request), namespace.slug,
                                            include_superseded=True)
                    .exclude(session_id="").exclude(kind=MemoryKind.SUMMARY))
        if prefix:
            memories = memories.filter(session_id__startswith=prefix)
        grouped = (memories.order_by().values("session_id")
                   .annotate(first=Min(EVENT_TIME), last=Max(EVENT_TIME), total=Count("pk"),
                             events=Count("pk", filter=~Q(event_type="")))
                   .order_by("-last", "session_id"))
        page = Paginator(grouped, INDEX_PAGE_SIZE).get_page(request.GET.get("page"))
        query = urlencode({"namespace": namespace.slug})
        context.update({
            "page": page, "q": prefix,
            "rows": [{**row, "url": f"{reverse('admin:session', args=[row['session_id']])}?{query}"}
                     for row in page.object_list],
            "page_query": urlencode({"namespace": namespace.slug, **({"q": prefix} if prefix else {})}),
        })
    title = f"Sessions of {namespace.slug}" if namespace is not None else "Sessions"
    return _page(request, "dashboard/sessions.html", title, **context)
