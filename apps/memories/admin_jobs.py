"""The dashboard's bulk jobs: the list of recent jobs, each job's progress page (which
becomes its result page when it ends), a small JSON status endpoint the page polls, and
Cancel. Registered from admin_bulk (the memory list's bulk actions start the jobs).

A job is shown only to people who may act in every namespace it touched (system admins:
all); anyone else gets 404, from the page and the status endpoint alike.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.cache import never_cache

from apps.core.confirm import plural
from apps.core.roles import Action
from apps.memories import bulk_jobs
from apps.memories.bulk_models import BulkJob
from apps.tenancy.admin_base import ScopedAdmin


@admin.register(BulkJob)
class BulkJobAdmin(ScopedAdmin):
    """Read-only: jobs are started from the memory list and written by their worker."""

    scope_action = Action.EDIT
    list_display = ["created_at", "what", "namespace_list", "started_by_label", "state",
                    "progress", "changed", "refused"]
    list_display_links = ["created_at", "what"]
    list_filter = ["state", "action"]
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("targets").prefetch_related("namespaces")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the row is the record of what was done

    @admin.display(description="what")
    def what(self, obj: BulkJob) -> str:
        return obj.describe()

    @admin.display(description="namespaces")
    def namespace_list(self, obj: BulkJob) -> str:
        return ", ".join(sorted(ns.slug for ns in obj.namespaces.all()))

    @admin.display(description="progress")
    def progress(self, obj: BulkJob) -> str:
        return f"{obj.done:,} of {obj.shown_total:,} ({obj.percent}%)"

    # --- The job's own pages ------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<path:object_id>/status/", view(never_cache(self.status_view)),
                     name="memories_bulkjob_status"),
                path("<path:object_id>/cancel/", view(self.cancel_view),
                     name="memories_bulkjob_cancel"),
                *super().get_urls()]

    def _job(self, request, object_id) -> BulkJob:
        job = self.get_object(request, object_id)
        if job is None:  # another tenant's job, or none: the same answer
            raise Http404("bulk job not found.")
        return job

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The progress page while the job runs, its result once it ended."""
        job = self._job(request, object_id)
        namespaces = sorted(ns.slug for ns in job.namespaces.all())
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "job": job,
            "title": job.describe(), "namespaces": namespaces, "status": bulk_jobs.status(job),
            "status_url": reverse("admin:memories_bulkjob_status", args=[job.pk]),
            "cancel_url": reverse("admin:memories_bulkjob_cancel", args=[job.pk]),
            "can_cancel": not job.finished and self._may_cancel(request, job),
            "unchanged": max(0, job.done - job.changed - job.refused),
            "refusals": [(memory_id, reason, self._memory_url(memory_id))
                         for memory_id, reason in job.refusals],
            "forgotten": sorted(job.result.items()),
            "summary": self._summary(job),
            "memories_url": reverse("admin:memories_memory_changelist"),
        }
        return TemplateResponse(request, "admin/memories/bulkjob/job.html", context)

    def status_view(self, request, object_id):
        """What the progress bar needs, polled by static/dashboard/jobs.js."""
        return JsonResponse(bulk_jobs.status(self._job(request, object_id)))

    def cancel_view(self, request, object_id):
        job = self._job(request, object_id)
        back = reverse("admin:memories_bulkjob_change", args=[job.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not self._may_cancel(request, job):
            raise Http404("bulk job not found.")
        if bulk_jobs.cancel(job, self.principal(request).label):
            messages.warning(request, "Job cancelled: the batches already done stay done.")
        else:
            messages.info(request, "The job had already ended.")
        return HttpResponseRedirect(back)

    def _may_cancel(self, request, job: BulkJob) -> bool:
        """Whoever may see the job; a forget-agents job, only a system admin (as it runs)."""
        return job.action != BulkJob.Kind.FORGET_AGENTS or self.principal(request).is_system_admin

    @staticmethod
    def _memory_url(memory_id: str) -> str | None:
        if len(memory_id) != 36:  # "agent in namespace" (forget), not a memory id
            return None
        return reverse("admin:memories_memory_change", args=[memory_id])

    @staticmethod
    def _summary(job: BulkJob) -> str:
        """The outcome in one sentence ("1,000 memories re-tagged; 2 refused.")."""
        done = {BulkJob.Kind.RETAG: "re-tagged", BulkJob.Kind.CHANGE_KIND:
                f"changed to {job.params.get('kind')}",
                BulkJob.Kind.FORGET_AGENTS: "forgotten"}[job.action]
        text = f"{plural(job.changed, 'memory', 'memories')} {done}"
        if job.refused:
            text += f"; {plural(job.refused, 'memory', 'memories')} refused"
        return text + "."
