"""Bulk actions of the dashboard's memory list, each behind a confirmation page.

Up to MEMORYWEB_DASHBOARD_BULK_INLINE_MAX memories an action is one batched service call
within the request; above it the action becomes a background job (apps/memories/
bulk_jobs.py) and the person lands on its progress page (issue 17, item 7: re-tagging
223 memories in one request took 17.7 s with nothing on screen).

"Forget everything from these agents" deletes every memory of each (agent, namespace) in
the selection, not only the selected ones, and cannot be undone: its page is in the
danger style and asks for the agent id (or namespace slug) to be typed (issue 17, item 3).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.confirm import plural, typed_matches
from apps.core.errors import ServiceError
from apps.memories import (
    admin_jobs,  # noqa: F401  (registers the bulk jobs' pages)
    bulk_jobs,
    services,
)
from apps.memories.admin_forms import KindForm, TagsForm
from apps.memories.bulk_models import BulkJob
from apps.memories.models import Memory


def inline_max() -> int:
    return settings.MEMORYWEB_DASHBOARD_BULK_INLINE_MAX


def forget_word(pairs: list[tuple[str, str]]) -> str:
    """What a person types to confirm forgetting: the agent id when there is one agent,
    else the namespace slug when there is one namespace, else "forget N agents"."""
    agents, slugs = {agent for agent, _ in pairs}, {slug for _, slug in pairs}
    if len(agents) == 1:
        return next(iter(agents))
    if len(slugs) == 1:
        return next(iter(slugs))
    return f"forget {len(agents)} agents"


class MemoryBulkActionsMixin:
    """Re-tag, re-kind and forget-agents for :class:`apps.memories.admin.MemoryAdmin`."""

    bulk_actions = ["retag", "change_kind", "forget_agents"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.principal(request).is_system_admin:
            actions.pop("forget_agents", None)  # DESIGN.md: bulk delete by agent is system-only
        return actions

    # --- Confirmation pages -------------------------------------------------------------
    def _confirm(self, request, queryset, action: str, title: str, form=None, *, count: int,
                 job_size: int | None = None, status: int = 200, **context):
        """The page re-posts the selection: the ids, or "all matching" (``select_across``,
        with the list's filters in the URL) so a selection of thousands is not thousands
        of form fields (Django refuses more than 1,000)."""
        select_across = request.POST.get("select_across") == "1"
        selected = [] if select_across else list(queryset.values_list("pk", flat=True))
        first = request.POST.getlist(ACTION_CHECKBOX_NAME)[:1] if select_across else []
        return TemplateResponse(request, "admin/memories/memory/bulk_confirm.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
            "action": action, "form": form, "count": count, "select_across": select_across,
            "action_checkbox_name": ACTION_CHECKBOX_NAME, "selected": selected or first,
            "as_job": (count if job_size is None else job_size) > inline_max(),
            "inline_max": inline_max(), **context,
        }, status=status)

    def _report(self, request, result: services.BatchEdit) -> int:
        """Refusals as error messages; the number of memories changed."""
        for memory_id, message in result.errors:
            self.message_user(request, f"{memory_id}: {message}", messages.ERROR)
        return len(result.updated)

    def _start_job(self, request, action: str, params: dict, targets: list, namespace_ids,
                   total: int, doing: str):
        """Record the job, queue it, and show its progress page."""
        job = bulk_jobs.start(request.user, action, params, targets, namespace_ids, total)
        self.message_user(request, f"{doing} {plural(total, 'memory', 'memories')} in the "
                                   "background: this page follows the job.", messages.INFO)
        return HttpResponseRedirect(reverse("admin:memories_bulkjob_change", args=[job.pk]))

    def _as_job(self, request, queryset, action: str, params: dict, doing: str):
        ids = sorted(str(pk) for pk in queryset.values_list("pk", flat=True))
        namespace_ids = sorted(set(queryset.values_list("namespace_id", flat=True)))
        return self._start_job(request, action, params, ids, namespace_ids, len(ids), doing)

    # --- The actions ------------------------------------------------------------------
    @admin.action(description="Re-tag selected memories")
    def retag(self, request, queryset):
        form = TagsForm(request.POST if "apply" in request.POST else None)
        count = queryset.count()
        if not form.is_valid():
            return self._confirm(request, queryset, "retag", "Re-tag memories", form, count=count)
        add, remove = (TagsForm.split(form.cleaned_data["add"]),
                       TagsForm.split(form.cleaned_data["remove"]))
        if count > inline_max():
            return self._as_job(request, queryset, BulkJob.Kind.RETAG,
                                {"add": add, "remove": remove}, "Re-tagging")
        # One batched service call: tags are not embedded, so nothing re-embeds.
        result = services.retag_many(self.principal(request), list(queryset.values_list("pk", flat=True)),
                                     add=add, remove=remove)
        changed = self._report(request, result)
        self.message_user(request, f"{plural(changed, 'memory', 'memories')} re-tagged.")
        return None

    @admin.action(description="Change kind of selected memories")
    def change_kind(self, request, queryset):
        form = KindForm(request.POST if "apply" in request.POST else None)
        count = queryset.count()
        if not form.is_valid():
            return self._confirm(request, queryset, "change_kind", "Change kind", form, count=count)
        kind = form.cleaned_data["kind"]
        if count > inline_max():
            return self._as_job(request, queryset, BulkJob.Kind.CHANGE_KIND, {"kind": kind},
                                f"Changing to {kind}")
        done = self._report(request, services.set_kind_many(
            self.principal(request), list(queryset.values_list("pk", flat=True)), kind))
        self.message_user(request, f"{plural(done, 'memory', 'memories')} changed to {kind}.")
        return None

    @admin.action(description="Forget everything from the selected memories' agents")
    def forget_agents(self, request, queryset):
        """Every memory of each (agent, namespace) in the selection, not only the selected
        ones: the confirmation page shows how many that is, and nothing happens until the
        agent id (or namespace slug) is typed."""
        pairs = sorted(set(queryset.values_list("agent_id", "namespace__slug")))
        counts = [(agent, slug, Memory.objects.filter(agent_id=agent, namespace__slug=slug).count())
                  for agent, slug in pairs]
        total, word = sum(n for *_, n in counts), forget_word(pairs)
        agents = plural(len({agent for agent, _ in pairs}), "agent", "agents")
        if "apply" not in request.POST or not typed_matches(request, word):
            error = (f"Type {word} exactly to confirm; nothing was forgotten."
                     if "apply" in request.POST else None)
            return self._confirm(request, queryset, "forget_agents",
                                 "Forget everything from these agents", None,
                                 count=queryset.count(), status=400 if error else 200,
                                 agent_counts=counts, total=total, typed=word, error=error,
                                 danger=f"Forget {plural(total, 'memory', 'memories')} from "
                                        f"{agents}", job_size=total)
        if total > inline_max():
            namespace_ids = sorted(set(queryset.values_list("namespace_id", flat=True)))
            return self._start_job(request, BulkJob.Kind.FORGET_AGENTS, {},
                                   [list(pair) for pair in pairs], namespace_ids, total,
                                   "Forgetting")
        principal, deleted = self.principal(request), 0
        for agent, slug, _ in counts:
            try:
                deleted += sum(services.delete_by_agent(principal, agent, namespace=slug).values())
            except ServiceError as exc:
                self.message_user(request, f"{agent} in {slug}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{plural(deleted, 'memory', 'memories')} forgotten from "
                                   f"{plural(len(counts), 'agent', 'agents')}.")
        return None
