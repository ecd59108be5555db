"""What the stores share: ingest (apps/memories/services/ingestion.py) and conversation
events (events.py) both check a batch and its namespace the same way, and build their
new rows in the order given with the same spacing of ``created_at``, so one module says
how."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone

from apps.core import conf
from apps.core.errors import InvalidInput
from apps.core.roles import Action
from apps.memories.models import Memory, content_hash
from apps.memories.services.access import check_writable
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace


def ingest_namespace(principal: Principal, namespace: str | None) -> Namespace:
    """The namespace to store in: one the principal may ingest into (agent role or
    above), not archived."""
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.INGEST)
    check_writable(ns)
    return ns


def batch_namespace(principal: Principal, items: Sequence[Any], namespace: str | None,
                    field: str) -> Namespace:
    """A batch's namespace (``ingest_namespace``), once the batch holds 1 to
    ``max_batch`` items (else a 400 naming ``field``, the items' name)."""
    limit = conf.limits().max_batch
    if not items:
        raise InvalidInput(f"no {field} given.", field=field)
    if len(items) > limit:
        raise InvalidInput(f"{len(items)} {field}; a batch holds at most {limit}.",
                           field=field, code="too_many")
    return ingest_namespace(principal, namespace)


def new_memories(principal: Principal, namespace: Namespace, items: Sequence[Mapping[str, Any]],
                 hashes: Sequence[str] | None = None) -> list[Memory]:
    """Unsaved memories of ``namespace`` for validated ``items`` (each a memory's fields,
    ``content`` included), stored by the principal's agent. ``hashes``: the items' content
    hashes when the caller has them already (ingest's dedup computed them).

    One microsecond apart in the order given, so "newest first" is the batch's order
    reversed, a session's turns that share an ``occurred_at`` list in the order they were
    said, and the next batch's first turn follows this one's last (context.assign; with
    one instant for all, it took any turn of the batch).
    """
    now = timezone.now()
    digests = hashes if hashes is not None else [content_hash(item["content"], namespace)
                                                     for item in items]
    memories = []
    for i, (item, digest) in enumerate(zip(items, digests, strict=True)):
        at = now + datetime.timedelta(microseconds=i)
        memories.append(Memory(id=uuid.uuid4(), namespace=namespace, agent_id=principal.agent_id,
                               content_hash=digest, created_at=at, updated_at=at, **item))
    return memories
