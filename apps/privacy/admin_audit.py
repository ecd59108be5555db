"""The audit log in the dashboard: read-only (append-only by design), scoped to the
person's namespaces, with a button that verifies the whole chain.

It lives in privacy, not in apps.audit: the audit app sits below every app that writes
(tenancy included) and only appends and verifies; showing the log to people needs
tenancy's keys and namespaces, so that side belongs to a layer above them."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db import transaction
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.audit import verify
from apps.audit.models import AuditCheckpoint, AuditEntry
from apps.ops.models import JobState
from apps.tenancy.admin_base import NamespaceFilter, ReadOnlyAdmin
from apps.tenancy.models import ApiKey

KEY_ACTOR = "key:"


class AuditNamespaceFilter(NamespaceFilter):
    """The shared namespace filter under the audit list's own parameter name."""

    parameter_name = "namespace_id"


class _KeyNamedChangeList(ChangeList):
    """After the page's rows are fetched, names the keys among their actors with one
    query for the whole page (not one per row)."""

    def get_results(self, request):
        super().get_results(request)
        prefixes = {entry.actor.removeprefix(KEY_ACTOR) for entry in self.result_list
                    if entry.actor.startswith(KEY_ACTOR)}
        # Only keys the viewer may see: a team admin is not told a system key's name.
        names = dict(ApiKey.objects.for_principal(self.model_admin.principal(request),
                                                  self.model_admin.scope_action)
                     .filter(prefix__in=prefixes).exclude(name="")
                     .values_list("prefix", "name")) if prefixes else {}
        for entry in self.result_list:
            entry.key_name = names.get(entry.actor.removeprefix(KEY_ACTOR))


def last_verified() -> dict | None:
    """The latest moment the chain was known intact: a checkpoint (written by the
    ``audit_checkpoint`` job and by the dashboard's button), the checkpoint job's last
    successful run, or a full walk by the daily ``audit_verify_full`` job, whichever is
    newer. The job's run counts on its own because it writes a checkpoint only when
    entries were added since the last one: in a quiet time it still checks the chain's
    end, and the page would otherwise show an older moment as if the job had stopped."""
    candidates = []
    checkpoint = AuditCheckpoint.objects.order_by("-verified_at").first()
    if checkpoint is not None:
        candidates.append({"at": checkpoint.verified_at, "seq": checkpoint.seq,
                           "by": checkpoint.verified_by or "the background audit_checkpoint job"})
    incremental = JobState.objects.filter(name="audit_checkpoint", last_outcome="ok").first()
    if incremental is not None and incremental.last_finished_at is not None:
        newest = AuditCheckpoint.objects.order_by("-seq").first()
        candidates.append({"at": incremental.last_finished_at,
                           "seq": newest.seq if newest else None,
                           "by": "the background audit_checkpoint job"})
    full = JobState.objects.filter(name="audit_verify_full", last_outcome="ok").first()
    if full is not None and full.last_finished_at is not None:
        candidates.append({"at": full.last_finished_at, "seq": None,
                           "by": "the background audit_verify_full job"})
    return max(candidates, key=lambda c: c["at"]) if candidates else None


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    change_list_template = "admin/audit/auditentry/change_list.html"
    list_display = ["seq", "created_at", "operation", "actor_name", "agent_id", "namespace",
                    "record_count", "request_id"]
    list_filter = ["operation", AuditNamespaceFilter, "created_at"]
    search_fields = ["=actor", "=agent_id", "=request_id", "=operation", "=records__record_id"]
    search_help_text = "Exact actor, agent, request id, operation or record (memory) id."
    ordering = ["-seq"]
    show_full_result_count = False
    readonly_fields = ["seq", "created_at", "actor", "agent_id", "namespace", "namespace_id",
                       "operation", "records_json", "summary_json", "request_id", "prev_hash",
                       "entry_hash"]

    def get_changelist(self, request, **kwargs):
        return _KeyNamedChangeList

    @admin.display(description="actor", ordering="actor")
    def actor_name(self, obj) -> str:
        """A key by its name and prefix ("Support bot (mw_live_ab12)"), others as written."""
        name = getattr(obj, "key_name", None)
        return f"{name} ({obj.actor.removeprefix(KEY_ACTOR)})" if name else obj.actor

    @admin.display(description="summary")
    def summary_json(self, obj):
        return format_html('<pre class="mw-json">{}</pre>', json.dumps(obj.summary, indent=2, sort_keys=True))

    @admin.display(description="record ids")
    def records_json(self, obj):
        return format_html('<pre class="mw-json">{}</pre>', json.dumps(obj.record_ids, indent=2))

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
        if verdict.ok and verdict.checked:
            # A checkpoint like the background job's, so "last verified" counts this walk.
            with transaction.atomic():
                AuditCheckpoint.objects.update_or_create(seq=verdict.last_seq, defaults={
                    "entry_hash": verdict.last_hash, "entries_checked": verdict.checked,
                    "verified_at": timezone.now(), "verified_by": "from the dashboard"})
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
        verified = last_verified()
        if verified and not self.principal(request).is_system_admin:
            verified["seq"] = None  # how long the chain is: system admins only
        return super().changelist_view(request, {**(extra_context or {}), "verdict": verdict,
                                                 "last_verified": verified})
