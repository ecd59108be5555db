"""Retention: memories past their namespace's maximum age, or past their own expires_at,
are erased through the erasure path (request, approval, execution, certificate, audit),
by the principal ``system:retention``. ``manage.py expire_memories`` runs it, and the
``expire_memories`` background job every hour (apps/privacy/tasks.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.core.roles import Role
from apps.memories.models import Memory
from apps.privacy import erasure
from apps.privacy.models import ErasureRequest
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

RETENTION = Principal(label="system:retention", agent_id="", role=Role.SYSTEM)


@dataclass
class RetentionReport:
    namespace: str
    due: int = 0
    erased: int = 0
    requests: list[ErasureRequest] = field(default_factory=list)


def due(namespace: Namespace) -> Q:
    """Memories of the namespace that retention erases now: expired, or too old."""
    now = timezone.now()
    condition = Q(expires_at__isnull=False, expires_at__lte=now)
    if namespace.retention_days:
        condition |= Q(created_at__lt=now - timedelta(days=namespace.retention_days))
    return condition


def _batches(namespace: Namespace) -> Iterator[list[str]]:
    size = settings.MEMORYWEB_LIMITS["max_batch"]  # an erasure selector's id limit
    ids = [str(pk) for pk in Memory.objects.filter(due(namespace), namespace=namespace)
           .order_by("created_at").values_list("pk", flat=True)]
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def expire(namespace: Namespace, *, dry_run: bool = False) -> RetentionReport:
    """Erase what is due in one namespace, one certified erasure per batch of ids."""
    report = RetentionReport(namespace.slug)
    report.due = Memory.objects.filter(due(namespace), namespace=namespace).count()
    if dry_run or not report.due or namespace.archived_at is not None:
        return report
    for ids in _batches(namespace):
        request = erasure.create(RETENTION, {
            "namespace": namespace.slug, "ids": ids, "execute": True,
            "reason": f"retention: older than {namespace.retention_days} days or expired"
            if namespace.retention_days else "retention: expired"})
        report.requests.append(request)
        report.erased += len(request.erased)
    return report


def resume_interrupted() -> int:
    """Finish the retention erasures a stopped run left behind (a killed worker): an
    ``approved`` one is executed, an ``executing`` one (memories already gone from SQL)
    gets its vectors, checks and certificate. Returns how many were finished."""
    from apps.privacy.models import ErasureState

    stuck = list(ErasureRequest.objects.filter(
        state__in=[ErasureState.APPROVED, ErasureState.EXECUTING], requested_by=RETENTION.label,
        namespace__isnull=False))  # a deleted namespace took its memories with it
    for request in stuck:
        erasure.execute(RETENTION, request.pk)
    return len(stuck)
