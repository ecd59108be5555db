"""privacy's scheduled job, ``expire_memories`` (retention), registered with
apps.ops.jobs; huey's consumer and every process's OpsConfig.ready find this module
(``autodiscover_modules("tasks")``)."""

import logging
from datetime import timedelta
from typing import Any

from huey import crontab

from apps.memories.tasks import drop_old_idempotency_records
from apps.ops.jobs import Job, register
from apps.privacy import retention
from apps.tenancy.models import Namespace

log = logging.getLogger(__name__)


def _expire_memories() -> dict[str, Any]:
    """Every namespace's retention, after finishing erasures a stopped run left; then
    the idempotency records past their window. One failure stops none of the rest."""
    failed: list[str] = []
    try:
        finished = retention.resume_interrupted()
    except Exception as exc:
        log.exception("retention: finishing interrupted erasures failed")
        finished, failed = 0, [f"resume: {exc}"]
    erased = 0
    for namespace in Namespace.objects.filter(archived_at__isnull=True).order_by("pk"):
        try:  # one namespace's trouble (say its vectors are unreachable) stops no other
            erased += retention.expire(namespace).erased
        except Exception as exc:
            log.exception("retention failed in namespace %s", namespace.slug)
            failed.append(f"{namespace.slug}: {exc}")
    try:
        dropped = drop_old_idempotency_records()
    except Exception as exc:
        log.exception("retention: dropping old idempotency records failed")
        dropped, failed = 0, [*failed, f"idempotency records: {exc}"]
    result: dict[str, Any] = {"erased": erased, "resumed": finished,
                              "idempotency_records_dropped": dropped}
    if failed:
        result.update(ok=False, failed=failed[:20])
    return result


expire_memories = register(Job(
    "expire_memories", "Erase memories past their namespace's retention or their own "
    "expiry, with certificates; finishes erasures a stopped run left executing.",
    "hourly at :07", _expire_memories, timeout=timedelta(hours=2)),
    crontab(minute="7"))
