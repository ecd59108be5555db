"""Appending to the audit log: one call, inside the transaction of the change it records.

Services call :func:`record` inside their ``transaction.atomic()`` block, so an entry
exists exactly when its change does: both commit or neither. Summaries hold counts,
field names and identifiers, never memory content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit import anchor
from apps.audit.models import AuditEntry, AuditHead, AuditRecord
from apps.core import request_id


class Actor(Protocol):
    """Who did it, as the log records it (apps.tenancy.principal.Principal is one). The
    audit app sits below tenancy, so it names the two fields it reads, not the class."""

    label: str
    agent_id: str


def record(actor: Actor | str, operation: str, *, namespace: Any = None,
           record_ids: Iterable[Any] = (), summary: Mapping[str, Any] | None = None,
           ) -> AuditEntry:
    """Append one entry. ``actor`` is the principal (or ``system:<job>`` for jobs);
    ``namespace`` a Namespace or None for server-wide operations.

    Must run inside the caller's transaction: appending locks the chain's head row
    until that transaction ends, which keeps sequence numbers gapless and each entry
    linked to the one before it across processes.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record() must run inside the transaction of the change.")
    with transaction.atomic(savepoint=False):  # part of the caller's transaction
        # The UPDATE takes the head's row lock (PostgreSQL) before it is read; SQLite
        # already holds the write lock (transaction_mode IMMEDIATE).
        if not AuditHead.objects.filter(pk=1).update(seq=F("seq") + 1):
            AuditHead.objects.create(pk=1, seq=1)
        head = AuditHead.objects.get(pk=1)
        ids = [str(i) for i in record_ids]
        entry = AuditEntry(
            seq=head.seq, created_at=timezone.now(),
            actor=actor if isinstance(actor, str) else actor.label,
            agent_id="" if isinstance(actor, str) else actor.agent_id,
            namespace=getattr(namespace, "slug", "") or "",
            namespace_id=getattr(namespace, "pk", None),
            operation=operation, record_ids=ids, summary=dict(summary or {}),
            request_id=request_id.current(), prev_hash=head.entry_hash,
        )
        entry.entry_hash = entry.compute_hash()
        entry.save(force_insert=True)
        AuditHead.objects.filter(pk=1).update(entry_hash=entry.entry_hash)
        if ids:
            AuditRecord.objects.bulk_create([AuditRecord(entry=entry, record_id=i) for i in ids])
    transaction.on_commit(lambda: anchor.advance(entry.seq, entry.entry_hash))
    return entry
