"""Memories in the dashboard: search, filters, edit with versions, diff and revert, bulk
actions. Every change goes through the service layer (versions, index, audit, events).

Team admins see the memories of the namespaces they manage (``for_principal``, as in
REST); system admins see all. Search uses the keyword index, not ``LIKE``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Case, Count, IntegerField, Value, When
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from apps.audit.models import AuditEntry
from apps.core.admin import NamespaceFilter, ScopedAdmin, SystemAdminOnly
from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.dashboard.diff import version_rows
from apps.memories import schemas, services
from apps.memories.models import IndexOutbox, Memory, MemoryKind, MemoryTag
from apps.memories.services import EDITABLE_FIELDS
from apps.tenancy.models import Namespace
from apps.tenancy.roles import Action

#: Choices offered by the agent and tag filters (the most frequent first).
FILTER_CHOICES = 50
#: Keyword matches considered by a search (per namespace, then merged).
SEARCH_LIMIT = 1000


class MemoryForm(forms.ModelForm):
    """Runs the service layer's own validation, so refusals show on the form, not as a 500."""

    class Meta:
        model = Memory
        fields = ["namespace", *EDITABLE_FIELDS]

    def clean(self):
        cleaned = super().clean()
        data = {f: cleaned[f] for f in EDITABLE_FIELDS if cleaned.get(f) is not None}
        if self.instance.pk:  # an edit sends only what changed (save_model): check that
            data = {f: v for f, v in data.items() if f in self.changed_data}
        try:
            schemas.validate(schemas.MemoryUpdate if self.instance.pk else schemas.MemoryInput, data,
                             partial=bool(self.instance.pk))
        except ServiceError as exc:
            field = exc.field.split(".")[0].split("[")[0] if exc.field else None
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


class _ScopedFilter(admin.SimpleListFilter):
    """A filter whose choices come from the rows the person may see, never from others'."""

    def scope(self, request, model_admin):
        return model_admin.get_queryset(request)


class AgentFilter(_ScopedFilter):
    title = "agent"
    parameter_name = "agent"

    def lookups(self, request, model_admin):
        agents = (self.scope(request, model_admin).values("agent_id").annotate(n=Count("pk"))
                  .order_by("-n", "agent_id")[:FILTER_CHOICES])
        return [(row["agent_id"], f"{row['agent_id']} ({row['n']})") for row in agents]

    def queryset(self, request, queryset):
        return queryset.filter(agent_id=self.value()) if self.value() else queryset


class TagFilter(_ScopedFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = MemoryTag.objects.for_principal(model_admin.principal(request), model_admin.scope_action)
        rows = tags.values("tag").annotate(n=Count("pk")).order_by("-n", "tag")[:FILTER_CHOICES]
        return [(row["tag"], f"{row['tag']} ({row['n']})") for row in rows]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(pk__in=MemoryTag.objects.filter(tag=self.value()).values("memory_id"))


class ImportanceFilter(admin.SimpleListFilter):
    title = "importance"
    parameter_name = "importance"
    BANDS = {"high": (0.7, 1.01), "medium": (0.3, 0.7), "low": (0.0, 0.3)}

    def lookups(self, request, model_admin):
        return [("high", "high (≥ 0.7)"), ("medium", "medium"), ("low", "low (< 0.3)")]

    def queryset(self, request, queryset):
        if self.value() not in self.BANDS:
            return queryset
        low, high = self.BANDS[self.value()]
        return queryset.filter(importance__gte=low, importance__lt=high)


class DuplicateFilter(admin.SimpleListFilter):
    title = "near-duplicates"
    parameter_name = "duplicates"

    def lookups(self, request, model_admin):
        return [("copy", "resembles an older memory"), ("original", "has near-duplicates")]

    def queryset(self, request, queryset):
        if self.value() == "copy":
            return queryset.filter(near_duplicate_of__isnull=False)
        if self.value() == "original":
            return queryset.filter(near_duplicates__isnull=False).distinct()
        return queryset


class TagsForm(forms.Form):
    add = forms.CharField(required=False, help_text="Comma-separated tags to add.")
    remove = forms.CharField(required=False, help_text="Comma-separated tags to remove.")

    @staticmethod
    def split(text: str) -> list[str]:
        return [tag.strip() for tag in text.split(",") if tag.strip()]


class KindForm(forms.Form):
    kind = forms.ChoiceField(choices=MemoryKind.choices)


@admin.register(Memory)
class MemoryAdmin(ScopedAdmin):
    form = MemoryForm
    scope_action = Action.EDIT
    change_form_template = "admin/memories/memory/change_form.html"
    list_display = ["snippet", "namespace", "agent_id", "kind", "importance", "created_at",
                    "last_recalled_at", "access_count", "duplicate_of"]
    list_filter = [NamespaceFilter, AgentFilter, "kind", TagFilter, "created_at",
                   ImportanceFilter, DuplicateFilter]
    search_fields = ["content"]  # shows the search box; get_search_results uses the index
    search_help_text = "Full-text search (the keyword index: words, any order)."
    date_hierarchy = "created_at"
    list_select_related = ["namespace"]
    list_per_page = 50
    show_full_result_count = False  # one COUNT less per page on large namespaces
    actions = ["retag", "change_kind", "forget_agents"]
    readonly_fields = ["id", "agent_id", "session_id", "created_at", "updated_at",
                       "last_recalled_at", "access_count", "near_duplicate_of", "content_hash",
                       "version"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "namespace"] if obj else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        """An archived namespace's memories are read-only (the services refuse writes)."""
        return super().has_change_permission(request, obj) and (
            obj is None or obj.namespace.archived_at is None)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.namespace.archived_at is None)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is None and "namespace" in form.base_fields:  # new memory: a namespace they edit
            form.base_fields["namespace"].queryset = Namespace.objects.for_principal(
                self.principal(request), self.scope_action)
        return form

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.principal(request).is_system_admin:
            actions.pop("forget_agents", None)  # DESIGN.md: bulk delete by agent is system-only
        return actions

    @admin.display(description="content")
    def snippet(self, obj):
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")

    @admin.display(description="dup of", boolean=True)
    def duplicate_of(self, obj):
        return obj.near_duplicate_of_id is not None

    def get_search_results(self, request, queryset, search_term):
        """Keyword-index matches in the person's namespaces; best first unless sorted."""
        if not search_term.strip():
            return queryset, False
        namespace_ids = list(queryset.values_list("namespace_id", flat=True).distinct())
        ids = services.keyword_matches(self.principal(request), search_term, SEARCH_LIMIT,
                                       namespace_ids=namespace_ids)
        queryset = queryset.filter(pk__in=ids)
        if "o" not in request.GET and ids:  # no column sort chosen: keep the index's order
            rank = Case(*[When(pk=pk, then=Value(i)) for i, pk in enumerate(ids)],
                        output_field=IntegerField())
            queryset = queryset.annotate(search_rank=rank).order_by("search_rank")
        return queryset, False

    # --- Detail: versions, diff, revert, audit trail, near-duplicates -----------------
    def get_urls(self):
        return [path("<uuid:object_id>/revert/<int:version>/",
                     self.admin_site.admin_view(self.revert_view), name="memories_memory_revert"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        memory = self.get_object(request, object_id)
        if memory is not None:
            principal = self.principal(request)
            extra_context = {
                **(extra_context or {}),
                "version_rows": version_rows(memory, memory.versions.order_by("-version")),
                "audit_entries": AuditEntry.objects.for_principal(principal, Action.MANAGE)
                .filter(records__record_id=str(memory.pk)).order_by("-seq")[:50],
                "near_duplicates": self.get_queryset(request).filter(
                    near_duplicates__pk=memory.pk) | self.get_queryset(request).filter(
                    near_duplicate_of=memory.pk),
            }
        return self._changeform_view(request, object_id, form_url, extra_context)

    def revert_view(self, request, object_id, version):
        """Revert after a confirmation page naming the memory and the version (issue 17,
        item 3): a GET or an unconfirmed POST changes nothing. The change page's list
        filters (``_changelist_filters``) ride along, so Cancel and the result keep them."""
        memory = get_object_or_404(self.get_queryset(request), pk=object_id)
        back = reverse("admin:memories_memory_change", args=[memory.pk])
        filters = request.GET.get("_changelist_filters")
        if filters:
            back += "?" + urlencode({"_changelist_filters": filters})
        if not confirmed(request):
            snippet = memory.content if len(memory.content) <= 60 else memory.content[:57] + "…"
            return confirmation_page(
                request, self.admin_site, title="Revert memory",
                effect=f"Revert memory “{snippet}” in {memory.namespace.slug} to version {version}",
                button=f"Revert to version {version}", cancel_url=back,
                details=[f"Every field becomes as it was in version {version}; this is saved as "
                         f"version {memory.version + 1} and re-indexed.",
                         "The current text is kept only in the version history."])
        try:
            reverted = services.revert(self.principal(request), memory.pk, version)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            if reverted.version == memory.version:
                messages.info(request, f"Already as in version {version}; nothing changed.")
            else:
                messages.success(request, f"Reverted to version {version}; this is now "
                                 f"version {reverted.version}.")
        return HttpResponseRedirect(back)

    # The services run their own transactions and index after commit; the admin's
    # outer transaction would hold SQLite's write lock while the model embeds.
    def add_view(self, request, form_url="", extra_context=None):
        return self._changeform_view(request, None, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        return self._delete_view(request, object_id, extra_context)

    def save_model(self, request, obj, form, change):
        principal = self.principal(request)
        data = {f: form.cleaned_data[f] for f in EDITABLE_FIELDS if f in form.cleaned_data}
        if change:
            changed = {f: v for f, v in data.items() if f in form.changed_data}
            saved = services.update(principal, obj.pk, changed) if changed else obj
        else:
            saved = services.ingest(principal, {k: v for k, v in data.items() if v is not None},
                                    namespace=obj.namespace.slug)
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change):
        """Nothing to save: tags are kept by the service, not by the form."""

    # The audit log records every change (who, what, when) without content; the admin's
    # own LogEntry would keep the first 60 characters of content in "Recent actions",
    # where erasure cannot follow it.
    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None

    def log_deletions(self, request, queryset):
        return None

    def delete_model(self, request, obj):
        services.delete(self.principal(request), obj.pk)

    def delete_queryset(self, request, queryset):
        try:
            ids = list(queryset.values_list("pk", flat=True))
            services.delete_many(self.principal(request), ids)
        except ServiceError as exc:
            messages.error(request, exc.message)

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


@admin.register(IndexOutbox)
class IndexOutboxAdmin(SystemAdminOnly):
    list_display = ["id", "namespace", "memory_id", "op", "created_at", "attempts", "last_error"]
    list_filter = ["op", "namespace"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # pending index work is replayed, never discarded by hand
