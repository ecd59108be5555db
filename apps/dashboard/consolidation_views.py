"""The dashboard's consolidation review (issue 21, item 6): a namespace's dry run shown as
proposals side by side, each accepted through a confirmation page or rejected on the page,
the conflicts found, and the unmerge behind the memory page's lineage block.

Everything goes through the lifecycle's services (apps/lifecycle/consolidation.py):
``consolidate`` with ``dry_run`` for the proposals, ``merge`` for one accepted proposal,
``unmerge`` to undo. They check the person's role; the pages also keep to the namespaces
the person manages (system admins: all) and answer 404 for any other, as for another
tenant.

Proposals are not stored on the server: the dry run runs again on every GET of the page
(it writes nothing), so after an accept the page shows what is left, and *Reject* only
hides a proposal by adding its key to the page's address (``hide``). Accept is a GET to a
confirmation page (the members and the chosen survivor ride in its address), and only the
confirming POST (CSRF-checked) merges: a GET never writes. Merged text is not written yet
(the service keeps the survivor's text); the pages say to edit the kept memory afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.dashboard.views import _chosen, _namespaces, _page
from apps.lifecycle import grouping, merged_text
from apps.lifecycle.consolidation import Outcome, consolidate, merge, unmerge
from apps.memories import services
from apps.memories.models import Memory
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.tenancy.models import Namespace
from apps.tenancy.people import principal_for
from apps.tenancy.services import AGENT_ID_RE

#: Proposals and conflicts shown on one page (a large namespace may find thousands: the
#: rest come as these are accepted or rejected, or with narrower filters).
MAX_SHOWN = 50
MAX_CONFLICTS = 50
#: Rejected (hidden) proposals kept in the page's address at most.
MAX_HIDDEN = 100
#: Agents offered in the agent filter's suggestions.
MAX_AGENTS = 200
#: The parameters of the page that a redirect back to it keeps.
KEPT = ("namespace", "threshold", "agent")
#: A proposal's key (``proposal_key``): anything else in ``hide`` is ignored.
KEY_RE = re.compile(r"^[0-9a-f]{12}$")


def urls(admin_view: Callable) -> list[URLPattern]:
    """The pages, as the dashboard's site registers them (apps/dashboard/sites.py)."""
    return [
        path("dashboard/consolidation/", admin_view(consolidation), name="consolidation"),
        path("dashboard/consolidation/merge/", admin_view(merge_view), name="consolidation_merge"),
        path("dashboard/consolidation/unmerge/<uuid:memory_id>/", admin_view(unmerge_view),
             name="consolidation_unmerge"),
        path("dashboard/consolidation/keep-apart/", admin_view(_keep_apart),
             name="consolidation_keep_apart"),
    ]


def _keep_apart(request: HttpRequest) -> HttpResponse:
    from apps.dashboard.kept_apart_views import keep_apart_view  # it imports this module

    return keep_apart_view(request)


def snippet(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


def proposal_key(members: Iterable[str]) -> str:
    """A short stable name for a group (its sorted member ids), for ``hide`` and anchors."""
    return hashlib.sha256(" ".join(sorted(members)).encode()).hexdigest()[:12]


def hidden_keys(request: HttpRequest) -> list[str]:
    """The proposals rejected on the page (``hide``), well-formed ones only."""
    return [key for key in dict.fromkeys(request.GET.getlist("hide")) if KEY_RE.match(key)][:MAX_HIDDEN]


def page_url(namespace: Namespace, query: Any, *, hide: Iterable[str] = (), run: bool = True) -> str:
    """The consolidation page with the dry run's parameters of ``query`` (a QueryDict or a
    dict), and these proposals hidden."""
    kept = {name: query.get(name) for name in KEPT if query.get(name)}
    kept["namespace"] = namespace.slug
    return f"{reverse('admin:consolidation')}?" + urlencode(
        {**kept, **({"run": "1"} if run else {}), **({"hide": list(hide)} if hide else {})},
        doseq=True)


class DryRunForm(forms.Form):
    """The dry run's input, as the page's address carries it (a GET form)."""

    namespace = forms.ChoiceField()
    threshold = forms.FloatField(
        required=False, min_value=0.5, max_value=1.0,
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
        help_text="Cosine similarity at which two memories say the same thing, 0.5 to 1.")
    agent = forms.CharField(required=False, max_length=128, label="Agent",
                            widget=forms.TextInput(attrs={"list": "consolidation-agents"}),
                            help_text="Only this agent's memories (empty: every agent).")

    def __init__(self, namespaces: QuerySet[Namespace], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [(ns.slug, ns.slug) for ns in namespaces]
        default = settings.MEMORYWEB_CONSOLIDATE_THRESHOLD
        self.fields["threshold"].widget.attrs["placeholder"] = f"{default:g}"
        self.fields["threshold"].help_text += f" Empty: the default, {default:g}."

    def clean_agent(self) -> str:
        agent = self.cleaned_data["agent"].strip()
        if agent and not AGENT_ID_RE.match(agent):
            raise forms.ValidationError("Not an agent id (letters, digits, '_', '.', '@', '-').")
        return agent

    def service_input(self) -> dict[str, Any]:
        """The form as ``consolidate``'s input (what a REST client would send). The page
        shows the members side by side: a merged text is written on the confirmation only."""
        data: dict[str, Any] = {"dry_run": True, "merged_text": merged_text.MEMBER}
        if self.cleaned_data["threshold"] is not None:
            data["threshold"] = self.cleaned_data["threshold"]
        if self.cleaned_data["agent"]:
            data["filters"] = {"agent_id": self.cleaned_data["agent"]}
        return data

    def refused(self, exc: ServiceError) -> None:
        """The service's refusal, on the field it names."""
        named = {"threshold": "threshold", "filters.agent_id": "agent"}.get(exc.field or "")
        self.add_error(named, exc.message)


@dataclass
class Member:
    id: str
    text: str
    agent: str
    created: dt.datetime | None
    #: Similarity to the proposed survivor (None: the survivor itself).
    similarity: float | None
    survivor: bool
    url: str
    #: Its own tags, as stored.
    tags: list[str] = field(default_factory=list)


@dataclass
class Proposal:
    key: str
    members: list[Member]
    survivor: Member
    similarity: float
    min_similarity: float
    to_survivor: dict[str, float]
    reject_url: str
    #: The survivor's tags once merged (the proposal's ``tags``: its own, then every other
    #: member's), and those it gains.
    tags: list[str] = field(default_factory=list)
    gained: list[str] = field(default_factory=list)


@dataclass
class ConflictRow:
    members: list[Member]
    similarity: float
    differs_in: list[str]


@dataclass
class Review:
    """What the page shows of a dry run."""

    outcome: Outcome
    proposals: list[Proposal] = field(default_factory=list)
    conflicts: list[ConflictRow] = field(default_factory=list)
    hidden: int = 0
    more: int = 0
    more_conflicts: int = 0

    @property
    def total(self) -> int:
        return len(self.outcome.groups)


def _review(outcome: Outcome, query: Any, hide: list[str]) -> Review:
    """The proposals not hidden (the survivor first, then the most alike), and the
    conflicts, with each member's agent and date: one query for all of them."""
    review = Review(outcome)
    groups = [(proposal_key(g.members), g) for g in outcome.groups]
    shown = [(key, g) for key, g in groups if key not in hide]
    review.hidden = len(groups) - len(shown)
    review.more = max(len(shown) - MAX_SHOWN, 0)
    shown = shown[:MAX_SHOWN]
    conflicts = outcome.conflicts[:MAX_CONFLICTS]
    review.more_conflicts = len(outcome.conflicts) - len(conflicts)
    ids = {i for _, g in shown for i in g.members} | {i for c in conflicts for i in (c.a, c.b)}
    about = {str(pk): (agent, created, tags or []) for pk, agent, created, tags in
             Memory.objects.in_namespace_checked(outcome.namespace).filter(pk__in=ids)
             .order_by().values_list("pk", "agent_id", "created_at", "tags")}

    def member(memory_id: str, similarity: float | None = None, survivor: bool = False) -> Member:
        agent, created, tags = about.get(memory_id, ("", None, []))
        return Member(memory_id, outcome.contents[memory_id], agent, created, similarity, survivor,
                      reverse("admin:memories_memory_change", args=[memory_id]), list(tags))

    for key, group in shown:
        to_survivor = group.to_survivor()
        kept = member(group.survivor, survivor=True)
        others = sorted(to_survivor.items(), key=lambda item: (-item[1], item[0]))
        tags = list(group.tags)
        review.proposals.append(Proposal(
            key, [kept, *(member(i, s) for i, s in others)], kept, group.similarity,
            group.min_similarity, to_survivor,
            page_url(outcome.namespace, query, hide=[*hide, key]), tags,
            [t for t in tags if t not in kept.tags]))
    review.conflicts = [ConflictRow([member(c.a), member(c.b)], c.similarity, list(c.differs_in))
                        for c in conflicts]
    return review


def _agents(namespace: Namespace) -> list[str]:
    """The namespace's agents, for the agent filter's suggestions (one query)."""
    return list(Memory.objects.filter(namespace=namespace).order_by("agent_id")
                .values_list("agent_id", flat=True).distinct()[:MAX_AGENTS])


def consolidation(request: HttpRequest) -> HttpResponse:
    """``?namespace=&threshold=&agent=&run=1[&hide=KEY…]``: the form, and with ``run`` the
    dry run's proposals and conflicts. Opening the page (no ``run``) runs nothing."""
    namespaces = _namespaces(request)
    namespace = _chosen(request, namespaces, request.GET.get("namespace"))
    context: dict[str, Any] = {"namespaces": namespaces, "namespace": namespace}
    if namespace is None:
        return _page(request, "dashboard/consolidation.html", "Consolidation", **context)
    title = f"Consolidation of {namespace.slug}"
    context["agents"] = _agents(namespace)
    context["max_candidates"] = f"{settings.MEMORYWEB_CONSOLIDATE_MAX:,}"
    if not request.GET.get("run"):
        context["form"] = DryRunForm(namespaces, initial={"namespace": namespace.slug})
        return _page(request, "dashboard/consolidation.html", title, **context)
    data = request.GET.copy()
    data["namespace"] = namespace.slug
    form = context["form"] = DryRunForm(namespaces, data)
    if not form.is_valid():
        return _status(_page(request, "dashboard/consolidation.html", title, **context), 400)
    try:
        outcome = consolidate(principal_for(request), namespace.slug, form.service_input(),
                              limit=settings.MEMORYWEB_CONSOLIDATE_MAX)
    except ServiceError as exc:
        form.refused(exc)
        return _status(_page(request, "dashboard/consolidation.html", title, **context), exc.status)
    except EmbeddedStoreBusy as exc:
        form.add_error(None, f"The vector store is busy; try again shortly ({exc}).")
        return _status(_page(request, "dashboard/consolidation.html", title, **context), 503)
    hide = hidden_keys(request)
    review = _review(outcome, request.GET, hide)
    context.update({
        "review": review, "outcome": outcome, "proposals": review.proposals,
        "conflicts": review.conflicts, "hide": hide,
        "show_hidden_url": page_url(namespace, request.GET),
        "kept_query": [(name, request.GET[name]) for name in KEPT[1:] if request.GET.get(name)],
    })
    return _page(request, "dashboard/consolidation.html", title, **context)


def _status(response: TemplateResponse, status: int) -> TemplateResponse:
    response.status_code = status
    return response


def _ids(values: list[str]) -> list[str] | None:
    """The members' ids in order, once each, or None if one is not an id."""
    try:
        return list(dict.fromkeys(str(uuid.UUID(value)) for value in values))
    except ValueError:
        return None


def merge_view(request: HttpRequest) -> HttpResponse:
    """Accept one proposal: ``?namespace=&members=…&survivor=`` (and the dry run's
    parameters, to return to it). A GET or an unconfirmed POST shows what merging does;
    the confirming POST calls ``merge`` and returns to a fresh dry run."""
    from django.contrib import admin

    namespaces = _namespaces(request)
    slug = request.GET.get("namespace", "")
    if not slug:
        raise Http404("namespace not found")
    namespace = _chosen(request, namespaces, slug)
    if namespace is None:  # not reached: _chosen raises for a slug that is not theirs
        raise Http404("namespace not found")
    principal = principal_for(request)
    back = page_url(namespace, request.GET, hide=hidden_keys(request))
    members = _ids(request.GET.getlist("members"))
    survivor = request.GET.get("survivor", "")

    def refuse(error: str, status: int) -> HttpResponse:
        return confirmation_page(request, admin.site, title="Merge memories",
                                 effect=f"Merge memories in {namespace.slug}.", button="Merge",
                                 cancel_url=back, error=error, can_confirm=False, status=status)

    if members is None:
        return refuse("A member is not a memory id: run the dry run again.", 400)
    if not 2 <= len(members) <= grouping.MAX_GROUP or survivor not in members:
        return refuse(f"Give 2 to {grouping.MAX_GROUP} members, the kept one among them: run the "
                      "dry run again.", 400)
    rows = {str(m.pk): m for m in services.list_memories(principal, namespace.slug,
                                                         include_superseded=True)
            .filter(pk__in=members)}
    if len(rows) != len(members):
        return refuse(f"A member is not a memory of {namespace.slug} (deleted or erased since "
                      "the dry run?): run the dry run again.", 404)
    if namespace.archived_at is not None:
        return refuse(f"{namespace.slug} is archived: its memories are not merged.", 409)
    merged = [rows[i] for i in members if rows[i].superseded_by_id is not None]
    if merged:
        return refuse(f"“{snippet(merged[0].content)}” was already merged into another memory "
                      "since the dry run: run the dry run again.", 409)
    kept = rows[survivor]
    others = [rows[i] for i in members if i != survivor]
    tags = grouping.merged_tags(kept.tags or [], (m.tags or [] for m in others))
    gained = [t for t in tags if t not in (kept.tags or [])]
    if confirmed(request):
        posted = request.POST.get("text")
        offered, _, author = _proposed_text(namespace, kept, others)
        by = author if posted is not None and " ".join(posted.split()) == " ".join(
            offered.split()) else ""  # accepted as the summarizer wrote it: its text
        try:
            outcome = merge(principal, namespace.slug, members, survivor, content=posted,
                            summarizer=by)
        except ServiceError as exc:
            return refuse(exc.message, exc.status)
        _say_merged(request, namespace, kept, len(members), outcome)
        if outcome.rewritten:
            messages.info(request, "The kept memory now says the merged text (a new version).")
        elif outcome.rewrite_error:
            messages.error(request, f"Merged, but the kept memory's text was not changed: "
                           f"{outcome.rewrite_error}")
        return HttpResponseRedirect(back)
    proposed, note, _ = _proposed_text(namespace, kept, others)
    details = [
        f"Kept: “{kept.content}” ({kept.agent_id}, stored {kept.created_at:%Y-%m-%d}). Edit "
        "the merged text below to have the kept memory say it (a versioned edit, after the "
        "merge); left as the kept memory's own text, its text stays.", *note,
        *(f"Superseded by it: “{m.content}” ({m.agent_id}, stored {m.created_at:%Y-%m-%d})."
          for m in others),
        _tags_line(tags, gained),
        "Superseded memories are kept: out of default lists and recall, shown with "
        "include_superseded. Unmerge on a memory's page undoes this.",
    ]
    return confirmation_page(
        request, admin.site, title="Merge memories",
        effect=f"Merge {plural(len(members), 'memory', 'memories')} in {namespace.slug}, keeping "
               f"“{snippet(kept.content)}”", button=f"Merge {len(members)} memories",
        cancel_url=back, details=details, text=("Merged text", proposed))


def _proposed_text(namespace: Namespace, kept: Memory, others: list[Memory]
                   ) -> tuple[str, list[str], str]:
    """The merged text offered for editing, a note on it, and who wrote it: the kept
    memory's own (""), or, where the namespace's ``consolidation.merged_text`` is
    ``summary``, the summarizer's text of the members and its name (the kept one's when
    the summarizer fails, saying so)."""
    if (namespace.consolidation or {}).get("merged_text") != merged_text.SUMMARY:
        return kept.content, [], ""
    contents = {str(m.pk): m.content for m in [kept, *others]}
    try:
        name, texts = merged_text.summaries([(str(kept.pk), list(contents))], contents)
    except ServiceError as exc:
        return kept.content, [f"The summarizer could not write a merged text: {exc.message}"], ""
    if str(kept.pk) not in texts:
        return kept.content, [], ""
    return texts[str(kept.pk)], [
        "The merged text below was written by the summarizer from the members (this "
        "namespace's consolidation setting); accepted as it is, it stays the summarizer's "
        "(an unmerge takes it back), edited it is yours."], name


def _tags_line(tags: list[str], gained: list[str]) -> str:
    """The kept memory's tags after merging, and what it gains (unmerge takes those back)."""
    if not tags:
        return "Tags after merging: none (no member has a tag)."
    line = f"Tags after merging: {', '.join(tags)}"
    if gained:
        return (f"{line}; it gains {', '.join(gained)} from the others (so a tag-filtered recall "
                "that found one of them finds it; unmerge takes them back).")
    return f"{line} (its own: it gains none)."


def _say_merged(request: HttpRequest, namespace: Namespace, kept: Memory, count: int,
                outcome: Outcome) -> None:
    if not outcome.merged:
        messages.warning(request, "Nothing was merged: a member changed since the dry run. "
                         "This is a new dry run.")
        return
    messages.success(request, format_html(
        "Merged {} memories in {}: “{}” is kept, {} superseded by it. "
        '<a href="{}" id="consolidation-kept-link">Open the kept memory</a> to edit it or to '
        "unmerge.", count, namespace.slug, snippet(kept.content), plural(
            outcome.superseded, "memory", "memories"),
        reverse("admin:memories_memory_change", args=[kept.pk])))


def unmerge_view(request: HttpRequest, memory_id: uuid.UUID) -> HttpResponse:
    """Undo a merge from the memory page: for a survivor, every memory merged into it; for
    a superseded memory, that one. A confirmation first; the confirming POST calls
    ``unmerge`` and returns to the memory's page."""
    from django.contrib import admin

    memory = (Memory.objects.filter(pk=memory_id, namespace__in=_namespaces(request))
              .select_related("namespace", "superseded_by").first())
    if memory is None:
        raise Http404("memory not found")
    page = reverse("admin:memories_memory_change", args=[memory.pk])
    merged_into_it = Memory.objects.filter(superseded_by=memory).count()
    title, text = "Unmerge", snippet(memory.content)
    if merged_into_it:
        effect = (f"Unmerge the {plural(merged_into_it, 'memory', 'memories')} merged into "
                  f"“{text}”")
        button = f"Unmerge {plural(merged_into_it, 'memory', 'memories')}"
        details = ["They become current again: back in default lists and recall.",
                   f"“{text}” keeps its text, unless the summarizer wrote it at the merge: "
                   "then it says its own text again."]
        if memory.superseded_by is not None:
            details.append(f"It stays merged into “{snippet(memory.superseded_by.content)}”; "
                           "unmerge it on its own afterwards.")
    elif memory.superseded_by is not None:
        survivor = memory.superseded_by
        left = Memory.objects.filter(superseded_by=survivor).count() - 1
        effect = f"Unmerge “{text}” from “{snippet(survivor.content)}”"
        button = "Unmerge this memory"
        details = ["It becomes current again: back in default lists and recall.",
                   f"{plural(left, 'other memory stays', 'other memories stay')} merged into "
                   f"“{snippet(survivor.content)}”."]
    else:
        return confirmation_page(
            request, admin.site, title=title, effect=f"Unmerge “{text}”", button="Unmerge",
            cancel_url=page, can_confirm=False, status=409,
            error="This memory is not merged: nothing was merged into it and it is not superseded.")
    if not confirmed(request):
        return confirmation_page(request, admin.site, title=title, effect=effect + ".",
                                 button=button, cancel_url=page + "#lineage", details=details)
    try:
        done = unmerge(principal_for(request), memory.pk)
    except ServiceError as exc:
        return confirmation_page(request, admin.site, title=title, effect=effect + ".",
                                 button=button, cancel_url=page + "#lineage", details=details,
                                 error=exc.message, can_confirm=False, status=exc.status)
    messages.success(request, f"Unmerged: {plural(len(done.released), 'memory is', 'memories are')}"
                     " current again.")
    return HttpResponseRedirect(page)
