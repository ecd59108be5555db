"""The audit log in the dashboard: read-only (append-only by design), scoped to the
person's namespaces, with a button that verifies the whole chain."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from apps.audit import verify
from apps.audit.models import AuditEntry
from apps.core.admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    change_list_template = "admin/audit/auditentry/change_list.html"
    list_display = ["seq", "created_at", "operation", "actor", "agent_id", "namespace", "record_count",
                    "request_id"]
    list_filter = ["operation", "created_at"]
    search_fields = ["=actor", "=agent_id", "=request_id", "=operation", "=records__record_id"]
    search_help_text = "Exact actor, agent, request id, operation or record (memory) id."
    ordering = ["-seq"]
    show_full_result_count = False
    readonly_fields = ["seq", "created_at", "actor", "agent_id", "namespace", "namespace_id",
                       "operation", "record_ids", "summary", "request_id", "prev_hash", "entry_hash"]

    @admin.display(description="records")
    def record_count(self, obj):
        return len(obj.record_ids)

    def get_urls(self):
        return [path("verify/", self.admin_site.admin_view(self.verify_view), name="audit_verify"),
                *super().get_urls()]

    def verify_view(self, request):
        """Walk the whole chain (as ``manage.py audit_verify``) and report its status.

        The chain is global, so a team admin is told whether it is intact, not where
        another tenant's entry broke it.
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        verdict = verify.verify()
        system = self.principal(request).is_system_admin
        # How long the chain is tells how busy every tenant is: system admins only.
        request.session["audit_verdict"] = {"ok": verdict.ok,
                                            "checked": verdict.checked if system else None}
        if verdict.ok:
            counted = f": {verdict.checked} entries verified" if system else ""
            messages.success(request, f"Audit chain intact{counted} up to the signed anchor.")
        elif system:
            seq, problem = verdict.broken
            messages.error(request, f"Audit chain BROKEN at entry {seq}: {problem}")
        else:
            messages.error(request, "Audit chain BROKEN: tell a system admin to run "
                           "manage.py audit_verify.")
        return HttpResponseRedirect(reverse("admin:audit_auditentry_changelist"))

    def changelist_view(self, request, extra_context=None):
        verdict = request.session.get("audit_verdict")
        return super().changelist_view(request, {**(extra_context or {}), "verdict": verdict})
