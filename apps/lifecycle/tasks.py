"""lifecycle's scheduled job, ``consolidate_memories``, registered with apps.ops.jobs
(huey's consumer and every process's OpsConfig.ready find this module). Pause and resume
it like any job (``manage.py jobs pause consolidate_memories``). And the huey tasks of
namespace merges run as jobs (apps/lifecycle/namespace_merge.py), with the minute's sweep
that resumes one whose worker stopped; likewise the consolidations too large for a request
(apps/lifecycle/consolidation_jobs.py)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from apps.core.roles import Role
from apps.lifecycle import consolidation, consolidation_jobs, forgetting, namespace_merge
from apps.lifecycle.models import ConsolidationState
from apps.lifecycle.namespace_setting import DEFAULT_INTERVAL_HOURS
from apps.ops.jobs import Job, register
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

log = logging.getLogger(__name__)
#: Who the scheduled merges are by, in the audit log.
ACTOR = Principal(label="system:lifecycle", agent_id="", role=Role.SYSTEM)


def due_namespaces(now=None) -> list[Namespace]:
    """Namespaces not archived whose ``consolidation.enabled`` is on and whose last
    scheduled run finished at least ``interval_hours`` ago (or never ran)."""
    now = now or timezone.now()
    finished = dict(ConsolidationState.objects.values_list("namespace_id", "last_finished_at"))
    due = []
    for namespace in Namespace.objects.filter(archived_at__isnull=True).order_by("pk"):
        setting = namespace.consolidation or {}
        if not setting.get("enabled"):
            continue
        interval = timedelta(hours=int(setting.get("interval_hours") or DEFAULT_INTERVAL_HOURS))
        last = finished.get(namespace.pk)
        if last is None or now - last >= interval:
            due.append(namespace)
    return due


def _consolidate_memories() -> dict[str, Any]:
    """Each due namespace consolidated and its merges applied (each reversible). One
    namespace's failure stops no other; it is recorded on its state and reported."""
    merged, failed, done = 0, [], 0
    for namespace in due_namespaces():
        state, _ = ConsolidationState.objects.get_or_create(namespace=namespace)
        state.last_started_at = timezone.now()
        state.save(update_fields=["last_started_at"])
        data: dict[str, Any] = {"dry_run": False}
        if (namespace.consolidation or {}).get("threshold") is not None:
            data["threshold"] = namespace.consolidation["threshold"]
        try:
            outcome = consolidation.consolidate(ACTOR, namespace.slug, data)
        except Exception as exc:
            log.exception("consolidation failed in namespace %s", namespace.slug)
            failed.append(f"{namespace.slug}: {exc}")
            state.last_result = {"error": str(exc)[:500]}
        else:
            done += 1
            merged += outcome.merged
            state.last_result = {"candidates": outcome.candidates, "merged": outcome.merged,
                                 "superseded": outcome.superseded, "stale": outcome.stale,
                                 "conflicts_linked": outcome.conflicts_linked}
        state.last_finished_at = timezone.now()
        state.save(update_fields=["last_result", "last_finished_at"])
    result: dict[str, Any] = {"namespaces": done, "merged": merged}
    if failed:
        result.update(ok=False, failed=failed[:20])
    return result


consolidate_memories = register(Job(
    "consolidate_memories", "Merge the memories that say the same thing in each namespace "
    "whose consolidation setting is enabled (each merge reversible; docs/lifecycle.md).",
    "hourly (each namespace at its own interval)", _consolidate_memories,
    timeout=timedelta(hours=2)),
    crontab(minute="23"))


def _review_strength() -> dict[str, Any]:
    """Each namespace's weak memories watched, the long weak proposed for forgetting."""
    totals = {"namespaces": 0, "watched": 0, "proposed": 0, "recovered": 0}
    for namespace in Namespace.objects.filter(archived_at__isnull=True).order_by("pk"):
        found = forgetting.review(namespace)
        totals["namespaces"] += 1
        for key in ("watched", "proposed", "recovered"):
            totals[key] += found[key]
    return totals


review_strength = register(Job(
    "review_strength", "Compute every memory's strength; propose for forgetting those below "
    "MEMORYWEB_FORGET_FLOOR for MEMORYWEB_FORGET_AFTER_DAYS (a review list: nothing is "
    "deleted; docs/lifecycle.md).", "daily at 04:41", _review_strength,
    timeout=timedelta(hours=2)),
    crontab(hour="4", minute="41"))


@db_task()
def run_namespace_merge(merge_id: str) -> None:
    """Run one namespace merge; a second task for the same merge finds it held and returns."""
    namespace_merge.run(merge_id)


@db_task()
def run_namespace_merge_revert(merge_id: str) -> None:
    """Move a reverting merge's memories back; a second task finds it held and returns."""
    namespace_merge.run_revert(merge_id)


@db_periodic_task(crontab(minute="*"))
def resume_namespace_merges() -> None:
    """Queue again the namespace merges whose worker died or whose task was lost."""
    namespace_merge.resume_stalled()


@db_task()
def run_consolidation(run_id: str) -> None:
    """Run one queued consolidation; a second task for the same run finds it held and returns."""
    consolidation_jobs.run(run_id)


@db_periodic_task(crontab(minute="*"))
def resume_consolidations() -> None:
    """Queue again the consolidation runs whose worker died or whose task was lost."""
    consolidation_jobs.resume_stalled()
