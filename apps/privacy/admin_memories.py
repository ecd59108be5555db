"""GDPR actions of the dashboard's memory list (issue 17, item 1): export the selected
memories, request their erasure, the Export / New erasure request buttons (prefilled from
the list's filters), and the hidden ``?erasure=<request id>`` filter behind an erasure
request's "View the matching memories".

The pages and the services are apps.privacy's (admin_workflow.py): the same selector
rules, namespaces, four-eyes and audit entries as REST. Privacy sits above memories, so
it extends the memory admin (a subclass registered in its place, below) rather than the
memory admin importing privacy.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse

from apps.core.confirm import plural
from apps.core.errors import ServiceError
from apps.memories.admin import MemoryAdmin
from apps.memories.models import Memory
from apps.privacy import erasure
from apps.privacy.admin_forms import ErasureForm
from apps.privacy.admin_workflow import form_page, stream_export
from apps.privacy.models import ErasureState
from apps.privacy.selectors import Selector, select
from apps.tenancy.admin_base import namespace_id_param
from apps.tenancy.models import Namespace

#: The list's filter parameters that prefill the privacy forms: list parameter -> field.
PREFILL_FROM_LIST = {"agent": "agent_id", "agent_id": "agent_id", "subject_id": "subject_id",
                     "subject": "subject_id", "session_id": "session_id", "session": "session_id"}


class ErasureMatchFilter(admin.SimpleListFilter):
    """``?erasure=<request id>``: the memories an erasure request selects now. Shown in the
    sidebar only while it is in use; a request the person may not see matches nothing."""

    title = "erasure request"
    parameter_name = "erasure"

    def _selector(self, request, model_admin) -> Selector | None:
        try:
            found = erasure.get(model_admin.principal(request), self.value())
        except ServiceError:
            return None
        if found.namespace is None or found.state not in (ErasureState.REQUESTED,
                                                          ErasureState.APPROVED):
            return None
        return Selector.described(found.namespace, found.selector)

    def lookups(self, request, model_admin):
        if not self.value():
            return []
        return [(self.value(), f"selected by request {str(self.value())[:8]}…")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        selector = self._selector(request, self._model_admin)
        if selector is None:
            return queryset.none()
        return queryset.filter(pk__in=selector.memories().values("pk"))

    def __init__(self, request, params, model, model_admin):
        self._model_admin = model_admin  # queryset() is not given it
        super().__init__(request, params, model, model_admin)


class MemoryPrivacyActionsMixin:
    """Export / erase actions for :class:`apps.memories.admin.MemoryAdmin`."""

    privacy_actions: list[str] = ["export_selected", "erase_selected"]

    def get_list_filter(self, request):
        return [*super().get_list_filter(request), ErasureMatchFilter]

    def changelist_view(self, request, extra_context=None):
        """The Export / New erasure request buttons, prefilled from the list's filters."""
        query = self._privacy_prefill(request)
        suffix = f"?{urlencode(query)}" if query else ""
        tools = {"export_url": reverse("admin:privacy_export") + suffix,
                 "erasure_url": reverse("admin:privacy_erasure_new") + suffix}
        if request.GET.get(ErasureMatchFilter.parameter_name):  # came from a request's review
            try:
                found = erasure.get(self.principal(request),
                                    request.GET[ErasureMatchFilter.parameter_name])
            except ServiceError:
                found = None
            if found is not None:
                tools["request_url"] = reverse("admin:privacy_erasurerequest_change",
                                               args=[found.pk])
        return super().changelist_view(request, {**(extra_context or {}),
                                                 "privacy_tools": tools})

    def _privacy_prefill(self, request) -> dict[str, str]:
        query: dict[str, str] = {}
        namespace_pk = namespace_id_param(request.GET.get("namespace"))
        if namespace_pk is not None:  # the list filters by id; the forms take the slug
            slug = (Namespace.objects.for_principal(self.principal(request), self.scope_action)
                    .filter(pk=namespace_pk).values_list("slug", flat=True).first())
            if slug:
                query["namespace"] = slug
        for parameter, name in PREFILL_FROM_LIST.items():
            value = request.GET.get(parameter, "").strip()
            if value and name not in query:
                query[name] = value
        return query

    def _one_namespace(self, request, queryset) -> tuple[str, list[str]] | None:
        """The selection's namespace and ids, or None after telling the person why not."""
        limit = settings.MEMORYWEB_LIMITS["max_batch"]
        rows = list(queryset.values_list("namespace__slug", "pk")[: limit + 1])
        if len(rows) > limit:
            self.message_user(request, f"Select at most {limit:,} memories, or use Export… / "
                              "New erasure request… with a subject, agent or session.",
                              messages.ERROR)
            return None
        slugs = sorted({slug for slug, _ in rows})
        if len(slugs) != 1:
            self.message_user(request, f"The selection spans {len(slugs)} namespaces "
                              f"({', '.join(slugs)}); select memories of one namespace.",
                              messages.ERROR)
            return None
        return slugs[0], [str(pk) for _, pk in rows]

    @admin.action(description="Export selected memories (download)")
    def export_selected(self, request, queryset) -> Any:
        """A streamed download of the selected memories, audited with its count."""
        selection = self._one_namespace(request, queryset)
        if selection is None:
            return None
        principal = self.principal(request)
        try:
            selector = select(principal, {"namespace": selection[0], "ids": selection[1]})
        except ServiceError as exc:
            self.message_user(request, f"Could not export: {exc.message}", messages.ERROR)
            return None
        return stream_export(request, principal, selector)

    @admin.action(description="Request erasure of selected memories…")
    def erase_selected(self, request, queryset) -> Any:
        """The new-request form with the selection's ids filled in; it asks for a reason
        and creates nothing until it is submitted."""
        selection = self._one_namespace(request, queryset)
        if selection is None:
            return None
        slug, ids = selection
        form = ErasureForm(initial={"namespace": slug, "ids": "\n".join(ids)},
                           principal=self.principal(request))
        if slug not in dict(form.fields["namespace"].choices):
            self.message_user(request, f"You do not manage {slug}: a team admin of it or a "
                              "system admin requests its erasures.", messages.ERROR)
            return None
        return form_page(request, self.admin_site, form, erasing=True,
                         intro=f"The {plural(len(ids), 'memory', 'memories')} you selected "
                               f"in {slug}.")


class MemoryWithPrivacyAdmin(MemoryPrivacyActionsMixin, MemoryAdmin):
    """The memory list with the GDPR actions and buttons added."""

    actions = [*MemoryAdmin.actions, *MemoryPrivacyActionsMixin.privacy_actions]


admin.site.unregister(Memory)
admin.site.register(Memory, MemoryWithPrivacyAdmin)
