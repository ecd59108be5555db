"""audit's scheduled jobs, ``audit_checkpoint`` and ``audit_verify_full``, registered
with apps.ops.jobs; huey's consumer and every process's OpsConfig.ready find this module
(``autodiscover_modules("tasks")``)."""

from datetime import timedelta
from typing import Any

from huey import crontab

from apps.audit import checkpoint
from apps.ops.jobs import Job, register


def _audit_checkpoint() -> dict[str, Any]:
    made = checkpoint.advance()
    return {"ok": made.ok, "verified": made.checked, "seq": made.last_seq}


def _audit_verify_full() -> dict[str, Any]:
    verdict = checkpoint.verify_all()
    return {"ok": verdict.ok, "verified": verdict.checked}


audit_checkpoint = register(Job(
    "audit_checkpoint", "Verify the audit entries written since the last checkpoint "
    "and record a new one (a broken chain fails the job and the metric).",
    "every 10 minutes", _audit_checkpoint), crontab(minute="*/10"))
audit_verify_full = register(Job(
    "audit_verify_full", "Verify the whole audit chain against the signed anchor.",
    "daily at 03:17", _audit_verify_full, timeout=timedelta(hours=6)),
    crontab(hour="3", minute="17"))
