"""timeline's scheduled job, ``build_rollups``, registered with apps.ops.jobs (huey's
consumer and every process's OpsConfig.ready find this module). Pause and resume it like
any job (``manage.py jobs pause build_rollups``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone
from huey import crontab

from apps.memories.models import Memory
from apps.ops.jobs import Job, register
from apps.tenancy.models import Namespace
from apps.timeline import conf
from apps.timeline.build import build
from apps.timeline.models import RollupState
from apps.timeline.namespace_setting import schedule_of

log = logging.getLogger(__name__)


def scheduled(namespace: Namespace) -> bool:
    """Whether the job builds this namespace: its ``rollups.enabled`` when set; otherwise
    when MEMORYWEB_ROLLUPS_SCHEDULED is on and it holds conversation events (what the
    timeline is for). A namespace of hand-stored memories opts in, so its recall does not
    start returning summaries unasked."""
    choice = schedule_of(namespace).enabled
    if choice is not None:
        return bool(choice)
    return conf.scheduled() and Memory.objects.filter(namespace=namespace).exclude(
        event_type="").exists()


def due_trees(now=None) -> list[tuple[Namespace, str]]:
    """(namespace, agent id) pairs whose timeline the job builds now: namespaces not
    archived that are ``scheduled``, whose last build finished at least their interval
    ago; each agent listed in the setting gets its own tree beside the namespace's ("")."""
    now = now or timezone.now()
    finished = {(state.namespace_id, state.agent_id): state.last_finished_at
                for state in RollupState.objects.all()}
    due = []
    for namespace in Namespace.objects.filter(archived_at__isnull=True).order_by("pk"):
        if not scheduled(namespace):
            continue
        schedule = schedule_of(namespace)
        for agent_id in ("", *schedule.agents):
            last = finished.get((namespace.pk, agent_id))
            if last is None or now - last >= timedelta(minutes=schedule.interval_minutes):
                due.append((namespace, agent_id))
    return due


def _build_rollups() -> dict[str, Any]:
    """Every due timeline, brought up to date. One tree's failure (a summariser outage)
    stops no other; what failed is reported, and the next run resumes from the nodes'
    digests, so nothing is built twice."""
    built, failed, trees = 0, [], 0
    for namespace, agent_id in due_trees():
        trees += 1
        try:
            report = build(namespace, agent_id=agent_id)
        except Exception as exc:
            log.exception("rollups failed in namespace %s", namespace.slug)
            failed.append(f"{namespace.slug}/{agent_id or '*'}: {exc}")
            continue
        built += sum(report.built.values())
        failed += [f"{namespace.slug}/{agent_id or '*'} {item['level']} {item['start']}: "
                   f"{item['error']}" for item in report.failed]
    result: dict[str, Any] = {"trees": trees, "nodes_built": built}
    if failed:
        result.update(ok=False, failed=failed[:20])
    return result


build_rollups = register(Job(
    "build_rollups", "Bring each namespace's timeline (segment, day, week, month and year "
    "summaries with grips) up to date: only the days whose memories changed, then their "
    "week, month and year.", "every 15 minutes (each namespace at its own interval)",
    _build_rollups, timeout=timedelta(hours=2)),
    crontab(minute="*/15"))
