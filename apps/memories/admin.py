"""Memories in the dashboard: search, filters, edit with versions, diff and revert, bulk
actions. Every change goes through the service layer (versions, index, audit, events).

Team admins see the memories of the namespaces they manage (``for_principal``, as in
REST); system admins see all. Search uses the keyword index, not ``LIKE``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from apps.audit.models import AuditEntry
from apps.core.confirm import confirmation_page, confirmed
from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.memories import services
from apps.memories.admin_bulk import MemoryBulkActionsMixin
from apps.memories.admin_diff import version_rows
from apps.memories.admin_filters import AgentFilter, DuplicateFilter, ImportanceFilter, TagFilter
from apps.memories.admin_forms import MemoryForm
from apps.memories.admin_lineage import lineage
from apps.memories.admin_search import MemorySearchMixin
from apps.memories.models import IndexOutbox, Memory
from apps.memories.services import EDITABLE_FIELDS
from apps.tenancy.admin_base import NamespaceFilter, ScopedAdmin, SystemAdminOnly
from apps.tenancy.models import Namespace


@admin.register(Memory)
class MemoryAdmin(MemoryBulkActionsMixin, MemorySearchMixin, ScopedAdmin):
    """The memory list and editor. Privacy, a layer above, registers a subclass with its
    GDPR actions and buttons in its place (apps/privacy/admin_memories.py)."""

    form = MemoryForm
    scope_action = Action.EDIT
    change_form_template = "admin/memories/memory/change_form.html"
    list_display = ["snippet", "namespace", "agent_id", "kind", "importance", "created_at",
                    "last_recalled_at", "access_count", "duplicate_of"]
    list_filter = [NamespaceFilter, AgentFilter, "kind", TagFilter, *MemorySearchMixin.lookup_filters,
                   "created_at", ImportanceFilter, DuplicateFilter]
    search_fields = ["content"]  # shows the search box; get_search_results uses the index
    search_help_text = ("Every word must appear (tick “any word” for any of them); quoted phrases "
                        "and e-mail addresses match exactly.")
    date_hierarchy = "created_at"
    list_select_related = ["namespace"]
    list_per_page = 50
    show_full_result_count = False  # one COUNT less per page on large namespaces
    actions = [*MemoryBulkActionsMixin.bulk_actions]
    change_list_template = "admin/memories/memory/change_list.html"
    #: Set by the server, never by the form: shown read-only in a collapsed fieldset, and
    #: ignored if posted (they are not form fields at all).
    technical_fields = ["id", "agent_id", "session_id", "content_hash", "access_count",
                        "last_recalled_at", "near_duplicate_of", "version", "created_at",
                        "updated_at"]
    readonly_fields = technical_fields

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "namespace"] if obj else self.readonly_fields

    def get_fieldsets(self, request, obj=None):
        """What a person edits first; the times; then, folded away, what the server keeps
        (issue 17 item 5: content hash and access count sat among the editable fields)."""
        fieldsets = [
            (None, {"fields": ["namespace", "content", "kind", "tags", "metadata",
                               "importance", "confidence"]}),
            ("When", {"fields": ["occurred_at", "valid_from", "valid_until", "expires_at"]}),
        ]
        if obj is not None:
            fieldsets.append(("Technical details", {
                "classes": ["collapse"], "fields": self.technical_fields,
                "description": "Kept by the server; read-only."}))
        return fieldsets

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

    @admin.display(description="dup of", boolean=True)
    def duplicate_of(self, obj):
        return obj.near_duplicate_of_id is not None

    # --- Detail: versions, diff, revert, audit trail, near-duplicates -----------------
    def get_urls(self):
        return [path("<uuid:object_id>/revert/<int:version>/",
                     self.admin_site.admin_view(self.revert_view), name="memories_memory_revert"),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return self._changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        """The tabs' contents, and the heading from the stored memory: after a refused save
        ``obj`` carries the unsaved text (the form wrote it onto the instance), which the
        heading, the title and the breadcrumbs showed as if it were stored."""
        if obj is not None and obj.pk is not None and not add:
            stored = (self.get_queryset(request).filter(pk=obj.pk).first()
                      if request.method == "POST" else obj) or obj
            principal = self.principal(request)
            near = (self.get_queryset(request).filter(near_duplicates__pk=stored.pk)
                    | self.get_queryset(request).filter(near_duplicate_of=stored.pk))
            context.update({
                "stored": stored,
                "subtitle": str(stored),
                "version_rows": version_rows(stored, stored.versions.order_by("-version")),
                "audit_entries": list(
                    AuditEntry.objects.for_principal(principal, Action.MANAGE)
                    .filter(records__record_id=str(stored.pk)).order_by("-seq")[:50]),
                "near_duplicates": list(near),
                "lineage": lineage(stored),  # merged into / from, conflicts (issue 21)
            })
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(self, request, object_id, extra_context=None):
        """The admin's history page read "This object doesn't have a change history" (its
        LogEntry is not written for memories, see log_change): the real history is the
        version list on the change page, so HISTORY goes there, filters kept."""
        memory = self.get_object(request, unquote(object_id))
        if memory is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return HttpResponseRedirect(self._change_url(request, memory) + "#versions")

    def _change_url(self, request, memory: Memory) -> str:
        """The change page, with the list's filters (``_changelist_filters``) if any."""
        url = reverse("admin:memories_memory_change", args=[memory.pk])
        filters = request.GET.get("_changelist_filters")
        return url + "?" + urlencode({"_changelist_filters": filters}) if filters else url

    def revert_view(self, request, object_id, version):
        """Revert after a confirmation page naming the memory and the version (issue 17,
        item 3): a GET or an unconfirmed POST changes nothing. The change page's list
        filters (``_changelist_filters``) ride along, so Cancel and the result keep them."""
        memory = get_object_or_404(self.get_queryset(request), pk=object_id)
        back = self._change_url(request, memory) + "#versions"
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
                                    namespace=obj.namespace.slug).memory
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
