"""The dashboard's forgetting review list (issue 21, item 6): a namespace's weak memories,
kept (dismissed) on the page or forgotten through a confirmation page that opens a
certified erasure request.

Everything goes through controlled forgetting's services (apps/lifecycle/forgetting.py):
``review_list`` for the list and its counts, ``dismiss`` for *Keep*, ``request_forgetting``
for *Forget*. They check the person's role (team admin of the namespace, or system
admin); the pages also keep to the namespaces the person manages and answer 404 for any
other, as for another tenant. Forgetting never deletes here: it becomes an erasure
request that is approved (four-eyes as in privacy), executed and certified like any.

*Keep* is a POST on the list (CSRF-checked) that acts at once: it deletes nothing, and a
kept memory stays readable. *Forget* posts the selection too, and is answered with a
redirect to a confirmation page whose address carries the ids (the confirmation form
posts back to its own address); only its confirming POST asks for the erasure.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import NotFound, ServiceError
from apps.dashboard.views import _chosen, _namespaces, _page
from apps.lifecycle import forgetting
from apps.memories import services, strength
from apps.privacy import four_eyes
from apps.tenancy.models import Namespace
from apps.tenancy.people import principal_for

State = forgetting.State
#: The states as the page's filter offers them, in that order, with the page's words.
STATES: dict[str, str] = {State.PROPOSED: "Proposed", State.WATCHING: "Watching",
                          State.DISMISSED: "Kept", State.REQUESTED: "Erasure requested"}
#: Rows shown at once, weakest first (the rest come as these are decided).
PAGE_SIZE = 100
#: Memories named one by one on the confirmation page.
NAMED = 10
#: The parts' words on the page (apps/memories/strength.py).
PART_NAMES = {"importance": "importance", "confidence": "confidence", "use": "use",
              "age": "age", "track": "agent's track record"}


def urls(admin_view: Callable) -> list[URLPattern]:
    """The pages, as the dashboard's site registers them (apps/dashboard/sites.py)."""
    return [
        path("dashboard/forgetting/", admin_view(forgetting_list), name="forgetting"),
        path("dashboard/forgetting/decide/", admin_view(decide), name="forgetting_decide"),
        path("dashboard/forgetting/forget/", admin_view(forget), name="forgetting_forget"),
    ]


def list_url(namespace: Namespace, state: str = State.PROPOSED) -> str:
    query = {"namespace": namespace.slug}
    if state != State.PROPOSED:
        query["state"] = state
    return f"{reverse('admin:forgetting')}?{urlencode(query)}"


def snippet(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


@dataclass
class Row:
    """One weak memory as the list shows it."""

    id: str
    text: str
    agent: str
    kind: str
    #: The strength the last review found (the value the floor was compared with).
    strength: float
    below_since: dt.datetime
    days_weak: int
    checked_at: dt.datetime
    state: str
    url: str
    #: The strength now, part by part (the review's value can be a day old).
    now: float | None = None
    parts: list[tuple[str, float]] = field(default_factory=list)
    factors: list[tuple[str, float]] = field(default_factory=list)
    erasure_request: str | None = None
    erasure_url: str | None = None
    superseded_by_url: str | None = None


def _rows(request: HttpRequest, namespace: Namespace, results: list[dict[str, Any]]) -> list[Row]:
    """The service's rows with each memory's strength now, part by part: the memories read
    in one query, their strength in two more (apps/memories/strength.py)."""
    ids = [row["id"] for row in results]
    memories = list(services.list_memories(principal_for(request), namespace.slug,
                                           include_superseded=True).filter(pk__in=ids))
    now = timezone.now()
    found = strength.for_memories(namespace, memories, now=now)
    rows = []
    for row in results:
        made = Row(row["id"], row["content"], row["agent_id"], row["kind"], row["strength"],
                   row["below_since"], (now - row["below_since"]).days, row["checked_at"],
                   row["state"], reverse("admin:memories_memory_change", args=[row["id"]]))
        current = found.get(row["id"])
        if current is not None:
            made.now = current.value
            made.parts = [(PART_NAMES[name], value) for name, value in current.parts.items()]
            made.factors = [(name, value) for name, value in current.factors.items() if value != 1]
        if row["erasure_request"]:
            made.erasure_request = row["erasure_request"]
            made.erasure_url = reverse("admin:privacy_erasurerequest_change",
                                       args=[row["erasure_request"]])
        if row["superseded_by"]:
            made.superseded_by_url = reverse("admin:memories_memory_change",
                                             args=[row["superseded_by"]])
        rows.append(made)
    return rows


def _state(request: HttpRequest) -> str:
    """``?state=``, one of the service's states; another value is said, not obeyed."""
    asked = request.GET.get("state") or State.PROPOSED
    if asked not in STATES:
        messages.warning(request, f"Showing the proposed memories: ?state= is one of "
                         f"{', '.join(STATES)} ({asked[:20]} was asked for).")
        return State.PROPOSED
    return asked


def forgetting_list(request: HttpRequest) -> HttpResponse:
    """``?namespace=&state=``: the namespace's weak memories in that state, weakest first,
    with a count per state; *Keep* and *Forget…* for the proposed ones."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    context: dict[str, Any] = {
        "namespaces": namespaces, "namespace": namespace,
        "floor": settings.MEMORYWEB_FORGET_FLOOR,
        "after_days": settings.MEMORYWEB_FORGET_AFTER_DAYS}
    if namespace is None:
        return _page(request, "dashboard/forgetting.html", "Forgetting", **context)
    state = _state(request)
    principal = principal_for(request)
    try:
        listing = forgetting.review_list(principal, namespace.slug, state, PAGE_SIZE)
        counts = {name: listing["count"] if name == state else
                  forgetting.review_list(principal, namespace.slug, name, 0)["count"]
                  for name in STATES}
    except NotFound as exc:
        raise Http404("namespace not found") from exc
    rows = _rows(request, namespace, listing["results"])
    context.update({
        "state": state, "state_title": STATES[state], "rows": rows,
        "count": listing["count"], "more": max(listing["count"] - len(rows), 0),
        "tabs": [(name, title, counts[name], list_url(namespace, name))
                 for name, title in STATES.items()],
        "watching_url": list_url(namespace, State.WATCHING),
        "decide_url": reverse("admin:forgetting_decide"),
    })
    return _page(request, "dashboard/forgetting.html", f"Forgetting in {namespace.slug}", **context)


def _ids(values: list[str]) -> list[str] | None:
    """The ids in order, once each, or None if one is not an id."""
    try:
        return list(dict.fromkeys(str(uuid.UUID(value)) for value in values))
    except ValueError:
        return None


def _namespace_of(request: HttpRequest, slug: str) -> Namespace:
    """The namespace named, among those the person manages; 404 otherwise."""
    if not slug:
        raise Http404("namespace not found")
    namespace = _chosen(request, _namespaces(request), slug)
    if namespace is None:  # not reached: _chosen raises for a slug that is not theirs
        raise Http404("namespace not found")
    return namespace


def decide(request: HttpRequest) -> HttpResponse:
    """The list's form (POST): ``action=keep`` dismisses the selected proposals at once;
    ``action=forget`` leads to the confirmation page with them. A GET changes nothing and
    goes back to the list."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse("admin:forgetting"))
    namespace = _namespace_of(request, request.POST.get("namespace", ""))
    back = list_url(namespace)
    ids = _ids(request.POST.getlist("ids"))
    if ids is None:
        messages.error(request, "A selected row is not a memory id: nothing was changed.")
        return HttpResponseRedirect(back)
    if not ids:
        messages.error(request, "Select at least one memory first: nothing was changed.")
        return HttpResponseRedirect(back)
    action = request.POST.get("action")
    if action == "forget":
        return HttpResponseRedirect(f"{reverse('admin:forgetting_forget')}?" + urlencode(
            {"namespace": namespace.slug, "ids": ids}, doseq=True))
    if action != "keep":
        messages.error(request, "Choose Keep or Forget: nothing was changed.")
        return HttpResponseRedirect(back)
    try:
        kept = forgetting.dismiss(principal_for(request), namespace.slug, {"ids": ids})
    except ServiceError as exc:
        messages.error(request, f"Nothing was kept: {exc.message}")
        return HttpResponseRedirect(back)
    messages.success(request, f"{plural(kept, 'memory', 'memories')} kept: "
                     f"{'it is' if kept == 1 else 'they are'} not proposed for forgetting again "
                     f"(listed under Kept).")
    return HttpResponseRedirect(back)


def _who_approves(namespace: Namespace) -> str:
    if four_eyes.enabled():
        return (f"Four-eyes is on: another team admin of {namespace.slug} or a system admin "
                "approves it, not you (you may reject it to withdraw it).")
    return (f"A team admin of {namespace.slug} (you too: four-eyes is off) or a system admin "
            "approves or rejects it.")


def forget(request: HttpRequest) -> HttpResponse:
    """``?namespace=&ids=…``: what forgetting these proposals does; the confirming POST
    calls ``request_forgetting`` and opens the erasure request it made."""
    from django.contrib import admin

    namespace = _namespace_of(request, request.GET.get("namespace", ""))
    principal = principal_for(request)
    back = list_url(namespace)
    ids = _ids(request.GET.getlist("ids"))
    title = "Forget memories"

    def refuse(error: str, status: int) -> HttpResponse:
        return confirmation_page(request, admin.site, title=title,
                                 effect=f"Forget memories in {namespace.slug}.", button="Forget",
                                 cancel_url=back, error=error, can_confirm=False, status=status)

    if not ids:
        return refuse("Select the memories to forget on the list first.", 400)
    if len(ids) > forgetting.MAX_IDS:
        return refuse(f"At most {forgetting.MAX_IDS:,} memories at once.", 400)
    proposed = {row["id"]: row for row in forgetting.review_list(
        principal, namespace.slug, State.PROPOSED, forgetting.MAX_IDS)["results"]}
    gone = [pk for pk in ids if pk not in proposed]
    if gone:
        return refuse(f"{plural(len(gone), 'selected memory is', 'selected memories are')} no "
                      "longer proposed for forgetting (kept, requested or recovered since): "
                      "nothing was asked. Go back to the list and select again.", 409)
    chosen = [proposed[pk] for pk in ids]
    count = plural(len(chosen), "memory", "memories")
    effect = (f"Forget {count} in {namespace.slug}: open a certified erasure request for "
              f"{'it' if len(chosen) == 1 else 'them'}.")
    button = f"Request erasure of {count}"
    if confirmed(request):
        try:
            made = forgetting.request_forgetting(principal, namespace.slug, {"ids": ids})
        except ServiceError as exc:
            return confirmation_page(request, admin.site, title=title, effect=effect,
                                     button=button, cancel_url=back, error=exc.message,
                                     can_confirm=False, status=exc.status)
        messages.success(request, format_html(
            "Forgetting {} in {} is now this erasure request: it is approved, then executed "
            "by a system admin and certified. Nothing is erased until then. "
            '<a href="{}" id="forgetting-back-link">Back to the forgetting list</a>',
            count, namespace.slug, back))
        return HttpResponseRedirect(reverse("admin:privacy_erasurerequest_change", args=[made.pk]))
    details = [
        *(f"“{snippet(row['content'])}” ({row['agent_id']}, strength {row['strength']:.2f})"
          for row in chosen[:NAMED]),
        *([f"…and {plural(len(chosen) - NAMED, 'more memory', 'more memories')}."]
          if len(chosen) > NAMED else []),
        f"Nothing is erased yet: this opens an erasure request naming "
        f"{'this memory' if len(chosen) == 1 else f'these {count}'}, with "
        f"the reason “forgetting: strength below {settings.MEMORYWEB_FORGET_FLOOR} for "
        f"{settings.MEMORYWEB_FORGET_AFTER_DAYS} days”. You land on its page.",
        _who_approves(namespace),
        "Once approved, a system admin executes it: the memories are erased from every store "
        "(rows, versions, keyword and vector indexes) and a deletion certificate lists what "
        "was erased by hash, never by content.",
        "Until then they are listed here under Erasure requested; if the request is "
        "rejected, the next review proposes them again.",
    ]
    return confirmation_page(request, admin.site, title=title, effect=effect, button=button,
                             cancel_url=back, details=details)
