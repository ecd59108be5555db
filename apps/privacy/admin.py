"""Erasure requests in the dashboard: review what a request selects, approve or reject it
(team admin), execute it (system admin) and download its certificate.

Every button calls apps.privacy.erasure, as the REST API does, so the same rules, states
and audit entries apply; the admin never edits a request's row itself. The GDPR
workflow's other pages live beside it: Export and New erasure request
(admin_workflow.py), the request's story and certificate card (admin_story.py), Verify
now and the printable certificate (admin_certificate.py).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from apps.core.confirm import confirmation_page, confirmed, plural, typed_matches
from apps.core.errors import ServiceError
from apps.privacy import (  # noqa: F401  (admin_audit, admin_memories register admins)
    admin_audit,
    admin_certificate,
    admin_memories,
    admin_story,
    admin_workflow,
    erasure,
    four_eyes,
)
from apps.privacy.models import ErasureRequest, ErasureState
from apps.privacy.selectors import SUBJECT_FIELDS, Selector
from apps.tenancy.admin_base import ReadOnlyAdmin


@admin.register(ErasureRequest)
class ErasureRequestAdmin(ReadOnlyAdmin):
    change_form_template = "admin/privacy/erasurerequest/change_form.html"
    list_display = ["id", "namespace_slug", "state", "subject", "requested_by", "requested_at",
                    "decided_by", "executed_at"]
    list_filter = ["state"]
    search_fields = ["=id", "namespace_slug", "requested_by"]
    readonly_fields = ["id", "namespace_slug", "selector", "reason", "state", "requested_by",
                       "requested_at", "decided_by", "decided_at", "rejection_reason",
                       "executed_by", "executed_at", "certificate_sha256", "last_error"]
    fields = readonly_fields

    @admin.display(description="subject")
    def subject(self, obj):
        found = [f"{name}={obj.selector[name]}" for name in SUBJECT_FIELDS if name in obj.selector]
        return ", ".join(found) if found else "the whole namespace"

    def get_urls(self):
        view = self.admin_site.admin_view

        def bound(function):  # the workflow's views take this admin first
            return view(lambda request, **kwargs: function(self, request, **kwargs))

        return [
            path("export/", bound(admin_workflow.export_view), name="privacy_export"),
            path("new/", bound(admin_workflow.new_request_view), name="privacy_erasure_new"),
            path("<uuid:object_id>/step/<str:step>/", view(self.step_view), name="privacy_erasure_step"),
            path("<uuid:object_id>/certificate.json", view(self.certificate_view),
                 name="privacy_erasure_certificate"),
            path("<uuid:object_id>/certificate/verify/", bound(admin_certificate.verify_view),
                 name="privacy_erasure_verify"),
            path("<uuid:object_id>/certificate/print/", bound(admin_certificate.print_view),
                 name="privacy_erasure_print"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        """The list's tools: Export and New erasure request."""
        return super().changelist_view(request, {
            **(extra_context or {}), "export_url": reverse("admin:privacy_export"),
            "new_url": reverse("admin:privacy_erasure_new")})

    def history_view(self, request, object_id, extra_context=None):
        """The admin's own history is empty here (every step is a service call, recorded in
        the audit log, never a LogEntry): HISTORY opens the request's story instead."""
        found = get_object_or_404(self.get_queryset(request), pk=object_id)
        return HttpResponseRedirect(
            reverse("admin:privacy_erasurerequest_change", args=[found.pk]) + "#erasure-story")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        found = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if found is not None:
            principal = self.principal(request)
            can_decide = found.state == ErasureState.REQUESTED
            entries = list(admin_story.related_entries(principal, found))
            executed = found.state == ErasureState.EXECUTED and bool(found.certificate)
            context.update(
                selected_now=self._selected_now(found),
                can_decide=can_decide,
                # Four-eyes: the requester sees no approve button (the service refuses too).
                can_approve=can_decide and erasure.may_approve(principal, found),
                four_eyes=four_eyes.enabled(),
                can_execute=principal.is_system_admin
                and found.state in (ErasureState.APPROVED, ErasureState.EXECUTING),
                has_certificate=found.state == ErasureState.EXECUTED,
                certificate_json=json.dumps(found.certificate, indent=2) if found.certificate else "",
                subject_words=admin_workflow.describe(found.selector),
                story=admin_story.story(found, entries), audit_entries=entries,
                card=admin_story.certificate_card(found.certificate) if executed else None,
                matches_url=(f"{reverse('admin:memories_memory_changelist')}?"
                             f"{urlencode({'erasure': found.pk})}")
                if found.state in (ErasureState.REQUESTED, ErasureState.APPROVED)
                and found.namespace_id is not None else None,
            )
        return super().change_view(request, object_id, form_url, context)

    @staticmethod
    def _selected_now(found: ErasureRequest) -> int | None:
        """How many memories the selector matches now (what executing would erase)."""
        if found.namespace is None or found.state == ErasureState.EXECUTED:
            return None
        return Selector.described(found.namespace, found.selector).memories().count()

    def step_view(self, request, object_id, step: str):
        """approve | reject | execute, through the erasure service, after a confirmation.

        A GET (or a POST without ``confirm=yes``) shows the confirmation page naming the
        effect and changes nothing; executing also needs the namespace slug typed, and
        rejecting a reason. A refusal is shown on that page as a form error."""
        if step not in ("approve", "reject", "execute"):
            return HttpResponseNotAllowed(["GET", "POST"])
        found = get_object_or_404(self.get_queryset(request), pk=object_id)
        principal = self.principal(request)
        back = reverse("admin:privacy_erasurerequest_change", args=[found.pk])
        slug = found.namespace_slug
        count = self._selected_now(found)
        what = (plural(count, "memory", "memories") if count is not None else "the selected memories")
        pages = {
            "approve": dict(title="Approve erasure", button=f"Approve erasing {what} in {slug}",
                            effect=f"Approve erasing {what} in {slug}?",
                            details=[f"Selects {self.subject(found)}.",
                                     "A system admin can then execute it: the memories are "
                                     "erased from every store and cannot be restored."]),
            "reject": dict(title="Reject erasure", button="Reject this erasure request",
                           effect=f"Reject the request to erase {what} in {slug}?",
                           details=[f"Selects {self.subject(found)}.",
                                    "A rejected request is closed for good; the reason is kept "
                                    "with it and in the audit log."], reason=True),
            "execute": dict(title="Execute erasure", button=f"Erase {what} in {slug}",
                            effect=f"Erase {what} in {slug}",
                            details=[f"Selects {self.subject(found)}.",
                                     "They are erased from the database, the keyword index and "
                                     "the vector index, and a certificate is issued.",
                                     "This cannot be undone."], typed=slug),
        }

        def page(error: str | None = None, status: int = 200):
            return confirmation_page(request, self.admin_site, cancel_url=back, error=error,
                                     status=status, **pages[step])

        if not confirmed(request):
            return page()
        if step == "execute" and not typed_matches(request, slug):
            return page(f"Type the namespace slug {slug} exactly to confirm.", 400)
        steps = {
            "approve": lambda: erasure.approve(principal, found.pk),
            "reject": lambda: erasure.reject(principal, found.pk,
                                             {"reason": request.POST.get("reason", "")}),
            "execute": lambda: erasure.execute(principal, found.pk),
        }
        try:
            done = steps[step]()
        except ServiceError as exc:
            return page(f"Could not {step}: {exc.message}", exc.status)
        if step == "execute" and done.certificate:
            erased = done.certificate.get("counts", {}).get("memories")
            if erased is not None:
                messages.success(request, f"{plural(erased, 'memory', 'memories')} erased "
                                 f"in {slug}.")
        messages.success(request, f"Erasure request {done.state}.")
        return HttpResponseRedirect(back)

    def certificate_view(self, request, object_id):
        """The deletion certificate as a JSON download (as GET …/certificate over REST)."""
        found = get_object_or_404(self.get_queryset(request), pk=object_id)
        found = erasure.get(self.principal(request), found.pk)  # the service's own check
        if found.state != ErasureState.EXECUTED or not found.certificate:
            messages.error(request, "No certificate: the request has not been executed.")
            return HttpResponseRedirect(reverse("admin:privacy_erasurerequest_change", args=[found.pk]))
        response = HttpResponse(json.dumps(found.certificate, indent=2, sort_keys=True),
                                content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="erasure-{found.pk}.json"'
        return response
