"""Continuous verification of the audit chain, for the background jobs.

``advance`` verifies the entries written since the last checkpoint (cheap, every few
minutes) and records a new checkpoint; ``verify_all`` walks the whole chain (daily). A
broken chain is reported, never "fixed": the job fails, its failure counter and the
Prometheus series rise, and ``manage.py audit_verify`` tells where.
"""

from __future__ import annotations

from apps.audit.models import AuditCheckpoint
from apps.audit.verify import Verdict, verify


def advance() -> Verdict:
    last = AuditCheckpoint.objects.order_by("-seq").first()
    verdict = verify(since=(last.seq, last.entry_hash) if last else None)
    if verdict.ok and verdict.checked:
        AuditCheckpoint.objects.get_or_create(seq=verdict.last_seq, defaults={
            "entry_hash": verdict.last_hash, "entries_checked": verdict.checked})
    return verdict


def verify_all() -> Verdict:
    return verify()
