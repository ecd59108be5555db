"""The dashboard's *Keep apart…* (a consolidation proposal rejected for good) and *Allow
merging…* (on the memory page's lineage tab): a confirmation page, then the lifecycle's
service (apps/lifecycle/kept_apart.py) — the same rules and errors as REST's
``keep-apart`` and ``allow-together``.

``?namespace=&members=…`` (2 to 20 memory ids), ``allow=1`` to allow them together again;
back to the consolidation page with the dry run's parameters, or with ``memory=<id>`` to
that memory's page (never to an address taken from the request).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.dashboard.consolidation_views import hidden_keys, page_url, snippet
from apps.dashboard.views import _chosen, _namespaces
from apps.lifecycle import kept_apart
from apps.memories import services
from apps.tenancy.people import principal_for


def keep_apart_view(request: HttpRequest) -> HttpResponse:
    """Keep a proposal's memories apart, or allow two kept apart together again."""
    from django.contrib import admin

    slug = request.GET.get("namespace", "")
    namespace = _chosen(request, _namespaces(request), slug) if slug else None
    if namespace is None:
        raise Http404("namespace not found")
    allow = request.GET.get("allow") == "1"
    try:
        members = list(dict.fromkeys(str(uuid.UUID(v)) for v in request.GET.getlist(
            "members")[:kept_apart.MAX_MEMBERS + 1]))
        memory = str(uuid.UUID(request.GET["memory"])) if request.GET.get("memory") else None
    except ValueError:
        members, memory = [], None
    back = (reverse("admin:memories_memory_change", args=[memory]) + "#lineage" if memory
            else page_url(namespace, request.GET, hide=hidden_keys(request)))
    title = "Allow merging" if allow else "Keep apart"
    rows = {str(m.pk): m for m in services.list_memories(
        principal_for(request), namespace.slug, include_superseded=True).filter(pk__in=members)}
    texts = [f"“{snippet(rows[i].content, 200)}” ({rows[i].agent_id})" for i in members if i in rows]
    if allow:
        effect = (f"Allow {plural(len(members), 'memory', 'memories')} of {namespace.slug} to be "
                  "merged again: consolidation may propose them together.")
    else:
        effect = (f"Keep {plural(len(members), 'memory', 'memories')} of {namespace.slug} apart: "
                  "consolidation never proposes or merges two of them together again (dry "
                  "runs, applied and scheduled runs, every door).")
    details = [*texts, "Allow merging… on a memory's page (Lineage) undoes this."
               if not allow else "Keep apart… on a proposal kept them apart."]

    def page(error: str | None = None, status: int = 200) -> HttpResponse:
        return confirmation_page(request, admin.site, title=title, effect=effect,
                                 button=title, cancel_url=back, details=details, error=error,
                                 can_confirm=error is None, status=status)

    if len(members) < 2 or len(rows) != len(members):
        return page("Give 2 to 20 memories of this namespace (deleted or erased since?).",
                    400 if len(members) < 2 else 404)
    if not confirmed(request):
        return page()
    try:
        _, pairs = kept_apart.keep_apart(principal_for(request), namespace.slug,
                                         {"members": members}, apart=not allow)
    except ServiceError as exc:
        return page(exc.message, exc.status)
    messages.success(request, (f"Allowed together again ({plural(pairs, 'pair', 'pairs')})."
                               if allow else f"Kept apart ({plural(pairs, 'pair', 'pairs')}): "
                               "never proposed together again."))
    return HttpResponseRedirect(back)
