"""The dashboard's namespace merges (issue 21, item 6): the merges with their state and
progress, one merge's report (moved, deduplicated, who was left behind, who gains
access), and *Revert* through a confirmation page with the source's slug typed.

Namespace merge is for system admins (apps/lifecycle/namespace_merge.py refuses anyone
else): a team admin who opens these pages gets a 403 page in the dashboard's look that
says so and leads back (readers and agents never reach them: the site sends them to the
no-dashboard page). One merge and its revert go through the service (``get``,
``status``, ``revert``); the list reads the merge rows after the same system-admin check,
since the service has no listing.

Starting a merge stays with REST, ``/cmm/merge`` and ``manage.py merge_namespace`` (each
with a dry run); the page says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from apps.core.confirm import confirmation_page, confirmed, plural, typed_matches
from apps.core.errors import NotFound, ServiceError
from apps.dashboard.views import _page, system_admin_only
from apps.lifecycle import namespace_merge
from apps.lifecycle.models import NamespaceMerge
from apps.tenancy.principal import Principal

State = NamespaceMerge.State
#: Merges listed on one page, newest first.
PAGE_SIZE = 50
#: The states that may be reverted (namespace_merge.revert).
REVERTIBLE = (State.DONE, State.FAILED)
#: Seconds between reloads of a merge's page while it runs (no script needed).
REFRESH_SECONDS = 5


def urls(admin_view: Callable) -> list[URLPattern]:
    """The pages, as the dashboard's site registers them (apps/dashboard/sites.py)."""
    return [
        path("dashboard/namespace-merges/", admin_view(merges), name="namespace_merges"),
        path("dashboard/namespace-merges/<uuid:merge_id>/", admin_view(merge_detail),
             name="namespace_merge"),
        path("dashboard/namespace-merges/<uuid:merge_id>/revert/", admin_view(revert_view),
             name="namespace_merge_revert"),
    ]


def _system_admin(request: HttpRequest) -> Principal | HttpResponse:
    return system_admin_only(
        request, "Namespace merges", "are",
        "Moving a whole namespace into another changes who may read its memories, so only "
        "a system admin starts, follows or reverts one.",
        "Ask a system admin if two of your namespaces should become one.")


def percent(merge: NamespaceMerge) -> int:
    """Share of the memories moved (100 for an empty source)."""
    return 100 if not merge.total else min(100, round(100 * merge.moved / merge.total))


def merges(request: HttpRequest) -> HttpResponse:
    """``?state=&page=``: every namespace merge, newest first, 50 a page."""
    principal = _system_admin(request)
    if isinstance(principal, HttpResponse):
        return principal
    state = request.GET.get("state", "")
    if state and state not in State.values:
        messages.warning(request, f"Showing every merge: ?state= is one of "
                         f"{', '.join(State.values)} ({state[:20]} was asked for).")
        state = ""
    rows = namespace_merge.listing(principal, state)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    filters = [("", "All", reverse("admin:namespace_merges"))] + [
        (value, label, f"{reverse('admin:namespace_merges')}?{urlencode({'state': value})}")
        for value, label in State.choices]
    return _page(request, "dashboard/namespace_merges.html", "Namespace merges",
                 page_obj=page, merges=[(m, percent(m)) for m in page.object_list],
                 state=state, filters=filters)


def _merge(principal: Principal, merge_id: uuid.UUID) -> NamespaceMerge:
    try:
        return namespace_merge.get(principal, merge_id)
    except NotFound as exc:
        raise Http404("namespace merge not found") from exc


def merge_detail(request: HttpRequest, merge_id: uuid.UUID) -> HttpResponse:
    """One merge: its state and progress and the report of what it decided."""
    principal = _system_admin(request)
    if isinstance(principal, HttpResponse):
        return principal
    merge = _merge(principal, merge_id)
    status = namespace_merge.status(merge)
    report = status["report"]
    return _page(
        request, "dashboard/namespace_merge.html",
        f"Merge of {merge.source.slug} into {merge.target.slug}", merge=merge, status=status,
        report=report, percent=percent(merge), started=merge.report.get("memories"),
        running=merge.state in (*NamespaceMerge.ACTIVE, State.REVERTING), refresh=REFRESH_SECONDS,
        revertible=merge.state in REVERTIBLE,
        target_change=reverse("admin:tenancy_namespace_change", args=[merge.target_id]),
        source_change=reverse("admin:tenancy_namespace_change", args=[merge.source_id]))


def _revert_details(merge: NamespaceMerge, moved: int) -> list[str]:
    """What a revert does and does not undo (docs/lifecycle.md, "Namespace merge")."""
    src, dst = merge.source.slug, merge.target.slug
    report = merge.report or {}
    keys, grants = len(report.get("keys_revoked") or []), len(report.get("grants_revoked") or [])
    return [
        f"The {plural(moved, 'memory', 'memories')} this merge moved that {dst} still holds go "
        f"back to {src} with their ids, versions and vectors (nothing is re-embedded); those "
        "the merge deduplicated become current again.",
        f"{src} is unarchived and accepts writes again.",
        f"Memories erased in {dst} since the merge stay erased; edits made there are kept.",
        f"Lineage made in {dst} meanwhile between a moved memory and one that stays there is "
        "cut (lineage never crosses namespaces).",
        "Seed 000 numbers and imported ids the move left behind are restored where they are "
        "still free.",
        f"Not undone: {src}'s revoked API keys ({keys}) and sharing grants ({grants}) stay "
        "revoked (re-issuing access is for people to decide), and a duplicate's slot given up "
        f"on the move is not restored (storing the same text in {src} again stores a copy).",
        "It runs while this page waits, in batches: a large merge takes a while "
        "(manage.py merge_namespace --revert ID does the same from a shell).",
    ]


def revert_view(request: HttpRequest, merge_id: uuid.UUID) -> HttpResponse:
    """What reverting does; the confirming POST, with the source's slug typed, calls
    ``revert`` and returns to the merge's page."""
    from django.contrib import admin

    principal = _system_admin(request)
    if isinstance(principal, HttpResponse):
        return principal
    merge = _merge(principal, merge_id)
    back = reverse("admin:namespace_merge", args=[merge.pk])
    src, dst = merge.source.slug, merge.target.slug
    moved = merge.items.count()
    title = "Revert a namespace merge"
    effect = (f"Revert the merge of {src} into {dst}: move "
              f"{plural(moved, 'memory', 'memories')} back into {src} and unarchive it.")
    button = f"Revert the merge into {dst}"

    def page(error: str | None = None, status: int = 200, can_confirm: bool = True) -> TemplateResponse:
        return confirmation_page(request, admin.site, title=title, effect=effect, button=button,
                                 cancel_url=back, details=_revert_details(merge, moved),
                                 typed=src, error=error, can_confirm=can_confirm, status=status)

    if merge.state not in REVERTIBLE:
        return page(f"Only a finished or failed merge can be reverted; this one is "
                    f"{merge.get_state_display().lower()}.", 409, can_confirm=False)
    if not confirmed(request):
        return page()
    if not typed_matches(request, src):
        return page(f"Type {src} exactly to confirm; nothing was reverted.", 400)
    try:
        done = namespace_merge.revert(principal, merge.pk)
    except ServiceError as exc:
        return page(exc.message, exc.status, can_confirm=False)
    if done.state == State.REVERTING:
        messages.success(request, f"Reverting the merge of {src} into {dst}: its "
                         f"{plural(done.items.count(), 'memory is', 'memories are')} moved back "
                         "in the background; this page follows it.")
        return HttpResponseRedirect(back)
    back_count = (done.report or {}).get("moved_back", 0)
    messages.success(request, f"Merge of {src} into {dst} reverted: "
                     f"{plural(back_count, 'memory', 'memories')} moved back into {src}, which "
                     "is unarchived. Its revoked keys and grants stay revoked.")
    return HttpResponseRedirect(back)

