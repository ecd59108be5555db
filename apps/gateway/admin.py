"""The dashboard's quarantine review (issue 22, item 6): what the gateway learned, to
approve, edit or reject, one by one or in bulk.

Registered on the default admin site (MemoryWeb's, apps/dashboard/sites.py): the gateway
and the dashboard are sibling layers and may not import each other, so the gateway's pages
live here. Every decision goes through the learning services (apps/gateway/learning.py):
they check the role, audit, and promote through the memories' one write path; this module
never writes a fact row itself.

Scope: the facts of the namespaces the person manages (team admins; system admins see
all); another tenant's fact is "not found". Facts are never added or deleted here (a fact
comes from an exchange; erasure removes it with its namespace's data).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import Truncator

from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.gateway import (
    admin_settings,
    admin_traces,  # noqa: F401  (registers the traces list)
    facts,
    learning,
)
from apps.gateway.models import FactState, LearnedFact
from apps.memories.admin_search import SealedTextSearchMixin
from apps.tenancy.admin_base import NamespaceFilter, ScopedAdmin

#: The most facts one bulk confirmation page names one by one (the counts cover them all).
LISTED = 50


class StateFilter(admin.SimpleListFilter):
    """Quarantined by default (the review's work list); the decided ones a click away."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [*FactState.choices, ("all", "All")]

    def choices(self, changelist):
        current = self.value() or FactState.QUARANTINED
        for value, label in self.lookup_choices:
            yield {"selected": current == value, "display": label,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}

    def queryset(self, request, queryset):
        value = self.value() or FactState.QUARANTINED
        if value == "all":
            return queryset
        if value not in FactState.values:
            return queryset.none()  # a hand-typed ?state=abc finds nothing, not a 500
        return queryset.filter(state=value)


class FactForm(forms.ModelForm):
    """Only the text is a form field: the rest is the learner's record (read-only)."""

    class Meta:
        model = LearnedFact
        fields = ["text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 4, "cols": 80})}


@admin.register(LearnedFact)
class LearnedFactAdmin(SealedTextSearchMixin, ScopedAdmin):
    """Quarantine review: list, detail (edit the text), approve / reject with confirmation.
    The search box matches the text; in an encrypted namespace, where it is sealed, the
    newest facts are opened and read (SealedTextSearchMixin) and the whole term is also
    looked up by its keyed ``key``."""

    scope_action = Action.MANAGE
    form = FactForm
    change_form_template = "admin/gateway/learnedfact/change_form.html"
    change_list_template = "admin/gateway/learnedfact/change_list.html"
    list_display = ["snippet", "seen_count", "confidence", "agent_id", "namespace", "state",
                    "first_seen_at", "last_seen_at"]
    list_filter = [NamespaceFilter, ("agent_id", admin.AllValuesFieldListFilter), StateFilter]
    search_fields = ["text"]
    sealed_scan_order = ("-last_seen_at", "-pk")
    ordering = ["-last_seen_at"]
    list_per_page = 50
    actions = ["approve_selected", "reject_selected"]
    readonly_fields = ["namespace", "state", "agent_id", "session_id", "seen_count",
                       "confidence", "first_seen_at", "last_seen_at", "memory_link",
                       "decided_by", "decided_at"]
    fieldsets = [(None, {"fields": ["text", "namespace", "state"]}),
                 ("Learned", {"fields": ["agent_id", "session_id", "seen_count", "confidence",
                                         "first_seen_at", "last_seen_at"]}),
                 ("Decision", {"fields": ["memory_link", "decided_by", "decided_at"]})]

    # --- scope and permissions --------------------------------------------------------------
    def get_queryset(self, request):
        """Facts of the namespaces the person manages (LearnedFact has no ``for_principal``
        queryset; this is the same cut by namespace ids)."""
        queryset = LearnedFact.objects.select_related("namespace")
        principal = self.principal(request)
        if principal.is_system_admin:
            return queryset
        return queryset.filter(namespace_id__in=principal.namespace_ids(self.scope_action))

    def has_add_permission(self, request) -> bool:
        return False  # a fact comes from an exchange, never from a form

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # reject instead: a rejected fact is not quarantined again

    def has_change_permission(self, request, obj=None) -> bool:
        """Only a quarantined fact is edited; a decided one is shown read-only."""
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or obj.state == FactState.QUARANTINED

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ["text", "namespace", "state"]}), *self.fieldsets[1:]]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["text", *self.readonly_fields]
        return self.readonly_fields

    def sealed_exact_lookup(self, search_term, namespace):
        """The fact whose canonical text is the whole term (its keyed ``key``)."""
        return Q(key=facts.key(search_term, namespace)) if facts.normalise(search_term) else None

    # --- columns ----------------------------------------------------------------------------
    @admin.display(description="text", ordering="text")
    def snippet(self, obj: LearnedFact) -> str:
        return Truncator(obj.text).chars(120)

    @admin.display(description="memory")
    def memory_link(self, obj: LearnedFact) -> Any:
        if not obj.memory_id:
            return "—"
        from django.utils.html import format_html

        return format_html('<a href="{}">{}</a>',
                           reverse("admin:memories_memory_change", args=[obj.memory_id]),
                           obj.memory_id)

    # --- the detail page: edit through the service ------------------------------------------
    def save_model(self, request, obj, form, change):
        """An edit is ``learning.edit`` (redacted, audited); a refusal is a message and the
        page comes back (``response_change``), nothing saved."""
        try:
            learning.edit(self.principal(request), obj.pk, form.cleaned_data["text"])
        except ServiceError as exc:
            request._gateway_refused = exc.message
            messages.error(request, f"Not saved: {exc.message}")

    def save_related(self, request, form, formsets, change):
        pass  # no relations: the service wrote the one field

    def log_change(self, request, obj, message):
        pass  # the audit log is the record (the admin's log would keep the fact's text)

    def response_change(self, request, obj):
        if getattr(request, "_gateway_refused", None):
            return HttpResponseRedirect(request.get_full_path())
        return super().response_change(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        fact = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if fact is not None and fact.state == FactState.QUARANTINED:
            extra["decide_urls"] = {
                "approve": reverse("admin:gateway_learnedfact_approve", args=[fact.pk]),
                "reject": reverse("admin:gateway_learnedfact_reject", args=[fact.pk])}
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request, extra_context=None):
        extra = dict(extra_context or {})
        extra["settings_url"] = reverse("admin:gateway_settings_index")
        return super().changelist_view(request, extra)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<uuid:fact_id>/approve/", view(self.approve_view),
                     name="gateway_learnedfact_approve"),
                path("<uuid:fact_id>/reject/", view(self.reject_view),
                     name="gateway_learnedfact_reject"),
                *admin_settings.urls(self),
                *super().get_urls()]

    def _fact(self, request, fact_id) -> LearnedFact:
        fact = self.get_queryset(request).filter(pk=fact_id).first()
        if fact is None:
            raise Http404("fact not found.")
        return fact

    def _decide_view(self, request, fact: LearnedFact, *, verb: str, decide, done: str,
                     details: list[str], **page):
        """A decision's confirmation page (``page``: title, effect, button, text); the
        confirming POST calls ``decide(principal, fact)`` (the learning service) and goes
        back to the fact with ``done``, or shows the refusal, nothing changed."""
        back = reverse("admin:gateway_learnedfact_change", args=[fact.pk])
        error = None
        if confirmed(request) and fact.state == FactState.QUARANTINED:
            try:
                decide(self.principal(request), fact)
            except ServiceError as exc:
                error = exc.message
            else:
                self.message_user(request, done)
                return HttpResponseRedirect(back)
        can = fact.state == FactState.QUARANTINED
        return confirmation_page(
            request, self.admin_site, cancel_url=back, error=error, can_confirm=can,
            status=400 if error else 200, **page,
            details=[*details, *([] if can else [f"This fact is {fact.state}: nothing to {verb}."])])

    def approve_view(self, request, fact_id):
        """A confirmation page with the text (editable: approving an edited text stores
        that); the confirming POST calls ``learning.approve``."""
        fact = self._fact(request, fact_id)
        posted = request.POST.get("text", "")
        text = None if " ".join(posted.split()) == " ".join(fact.text.split()) else posted
        return self._decide_view(
            request, fact, verb="approve",
            decide=lambda principal, found: learning.approve(principal, found, text=text),
            done=f"Fact approved{' with the edited text' if text else ''}: it is now a memory.",
            title="Approve a learned fact", button="Approve and store as a memory",
            effect=f"Approve this fact in {fact.namespace.slug}: store it as a memory",
            text=("Text to store (edit it first if needed)", fact.text),
            details=[f"Seen {plural(fact.seen_count, 'time', 'times')}; learned from "
                     f"{fact.agent_id}.",
                     "The memory is stored as the key that taught it (tag learned), through the "
                     "memories' write path; the approval is audited."])

    def reject_view(self, request, fact_id):
        fact = self._fact(request, fact_id)
        return self._decide_view(
            request, fact, verb="reject", decide=learning.reject,
            done="Fact rejected: it will not be quarantined again.",
            title="Reject a learned fact", button="Reject the fact",
            effect=f"Reject this fact in {fact.namespace.slug}: {Truncator(fact.text).chars(200)}",
            details=["It stays listed as rejected, so a later sighting does not quarantine it "
                     "again; this cannot be undone."])

    # --- bulk actions -----------------------------------------------------------------------
    def _bulk(self, request, queryset, action: str, verb: str, done_word: str, call
              ) -> TemplateResponse | None:
        """A confirmation page (counts per namespace, the facts named, those that are not
        quarantined counted as left alone), then one service call per fact."""
        waiting = queryset.filter(state=FactState.QUARANTINED)
        if "apply" not in request.POST:
            per_namespace = list(waiting.values("namespace__slug").annotate(n=Count("pk"))
                                 .order_by("namespace__slug"))
            return TemplateResponse(request, "admin/gateway/learnedfact/bulk_confirm.html", {
                **self.admin_site.each_context(request), "opts": self.model._meta,
                "title": f"{verb} learned facts", "action": action, "verb": verb,
                "count": waiting.count(), "skipped": queryset.count() - waiting.count(),
                "per_namespace": per_namespace, "listed": list(waiting[:LISTED]),
                "selected": list(queryset.values_list("pk", flat=True)),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "select_across": request.POST.get("select_across") == "1",
            })
        principal, done = self.principal(request), 0
        for fact in waiting:
            try:
                call(principal, fact)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{Truncator(fact.text).chars(60)}: {exc.message}",
                                  messages.ERROR)
        self.message_user(request, f"{plural(done, 'fact', 'facts')} {done_word}.")
        return None

    @admin.action(description="Approve selected facts (store them as memories)…")
    def approve_selected(self, request, queryset):
        return self._bulk(request, queryset, "approve_selected", "Approve", "approved",
                          lambda principal, fact: learning.approve(principal, fact))

    @admin.action(description="Reject selected facts…")
    def reject_selected(self, request, queryset):
        return self._bulk(request, queryset, "reject_selected", "Reject", "rejected",
                          learning.reject)
