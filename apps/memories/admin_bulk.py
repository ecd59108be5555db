"""Bulk actions of the dashboard's memory list, each behind a confirmation page, each one
batched service call."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse

from apps.core.confirm import plural
from apps.core.errors import ServiceError
from apps.memories import services
from apps.memories.admin_forms import KindForm, TagsForm
from apps.memories.models import Memory


class MemoryBulkActionsMixin:
    """Re-tag, re-kind and forget-agents for :class:`apps.memories.admin.MemoryAdmin`."""

    bulk_actions = ["retag", "change_kind", "forget_agents"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.principal(request).is_system_admin:
            actions.pop("forget_agents", None)  # DESIGN.md: bulk delete by agent is system-only
        return actions

    # --- Bulk actions (each with a confirmation page) -----------------------------------
    def _confirm(self, request, queryset, action: str, title: str, form=None, **context):
        return TemplateResponse(request, "admin/memories/memory/bulk_confirm.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
            "action": action, "form": form, "queryset": queryset, "count": queryset.count(),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": queryset.values_list("pk", flat=True), **context,
        })

    def _report(self, request, result: services.BatchEdit) -> int:
        """Refusals as error messages; the number of memories changed."""
        for memory_id, message in result.errors:
            self.message_user(request, f"{memory_id}: {message}", messages.ERROR)
        return len(result.updated)

    @admin.action(description="Re-tag selected memories")
    def retag(self, request, queryset):
        form = TagsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._confirm(request, queryset, "retag", "Re-tag memories", form)
        # One batched service call: tags are not embedded, so nothing re-embeds.
        result = services.retag_many(self.principal(request), list(queryset.values_list("pk", flat=True)),
                                     add=TagsForm.split(form.cleaned_data["add"]),
                                     remove=TagsForm.split(form.cleaned_data["remove"]))
        changed = self._report(request, result)
        self.message_user(request, f"{plural(changed, 'memory', 'memories')} re-tagged.")
        return None

    @admin.action(description="Change kind of selected memories")
    def change_kind(self, request, queryset):
        form = KindForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._confirm(request, queryset, "change_kind", "Change kind", form)
        kind = form.cleaned_data["kind"]
        done = self._report(request, services.set_kind_many(
            self.principal(request), list(queryset.values_list("pk", flat=True)), kind))
        self.message_user(request, f"{plural(done, 'memory', 'memories')} changed to {kind}.")
        return None

    @admin.action(description="Forget everything from the selected memories' agents")
    def forget_agents(self, request, queryset):
        """Every memory of each (agent, namespace) in the selection, not only the selected
        ones: the confirmation page shows how many that is."""
        pairs = sorted(set(queryset.values_list("agent_id", "namespace__slug")))
        counts = [(agent, slug, Memory.objects.filter(agent_id=agent, namespace__slug=slug).count())
                  for agent, slug in pairs]
        if "apply" not in request.POST:
            return self._confirm(request, queryset, "forget_agents",
                                 "Forget everything from these agents", None, agent_counts=counts,
                                 total=sum(n for *_, n in counts))
        principal, deleted = self.principal(request), 0
        for agent, slug, _ in counts:
            try:
                deleted += sum(services.delete_by_agent(principal, agent, namespace=slug).values())
            except ServiceError as exc:
                self.message_user(request, f"{agent} in {slug}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{plural(deleted, 'memory', 'memories')} forgotten from "
                                   f"{plural(len(counts), 'agent', 'agents')}.")
        return None
