"""Conversation events (issue 20): ``store_events`` (a batch from an agent's hooks) and
``list_session_events`` (one session in conversation order).

An event is a memory with an ``event_type`` and a ``role``, of kind ``event``: it is
written by the one write path, lives in the stores the registry lists, and is recalled,
exported and erased like any memory. What differs from ``ingest``:

- **Idempotent by the client's id**, not by content. The id is an ExternalId of system
  ``event``, unique per namespace, written in the transaction that stores the event, so
  a retry (or a concurrent identical request) stores nothing twice: the unique
  constraint picks one writer, the others answer with its memories. A repeated id must
  name the same event (agent, session, type, text): another one is a 409, never dropped
  silently (two agents numbering their events "1", "2"… would lose each other's). Two turns that both
  say "ok" are two events: no content dedup, no near-duplicate check.
- **Redacted on arrival**: text, metadata and tags pass through the capture client's
  ``redact`` (memoryweb_capture/redact.py) before validation, so a secret a hook missed
  never reaches a row, the keyword index or the vectors.
- **Append-only for agents**: apps/memories/services/access.py refuses their edits and
  deletes of an event (``append_only``); team and system admins may.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError
from django.db.models import QuerySet

from apps.audit.log import record as audit
from apps.core.errors import Conflict, InvalidInput, Unavailable
from apps.memories import context, event_schemas, indexing, schemas, writes
from apps.memories.filters import ORDERINGS
from apps.memories.models import ExternalId, Memory, MemoryKind, content_hash
from apps.memories.results import StoredEvent
from apps.memories.services.building import batch_namespace, new_memories
from apps.memories.services.reading import list_memories
from apps.ops import metrics
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from memoryweb_capture.redact import redact, redact_value

#: Attempts at storing a batch when concurrent requests store some of its ids first.
_ATTEMPTS = 3


@metrics.observed("store_events")
def store_events(principal: Principal, items: Sequence[Mapping[str, Any]],
                 namespace: str | None = None) -> list[StoredEvent]:
    """Store up to ``max_batch`` events in one namespace for the principal's agent (agent
    role or above): every event validated before any is written, all or nothing, in the
    order given. An id already stored in the namespace (or earlier in the batch) is not
    stored again: its result names the stored event with ``created`` False."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise InvalidInput("events must be a list of events.", field="events")
    ns = batch_namespace(principal, items, namespace, "events")
    cleaned = [_clean(item, f"events[{i}]") for i, item in enumerate(items)]
    for _ in range(_ATTEMPTS):
        try:
            return _store(principal, ns, cleaned)
        except IntegrityError:
            # A concurrent request stored some of these ids first (the unique constraint
            # on the external ids rolled this transaction back): store what is still new.
            if not _stored_meanwhile(ns, cleaned):
                raise
    raise Unavailable("concurrent requests kept storing these events; retry.")


def list_session_events(principal: Principal, session_id: str,
                        namespace: str | None = None) -> QuerySet[Memory]:
    """One session's live events in conversation order (when they happened, then the
    order they were stored; an event without ``occurred_at`` by when it was stored), from
    the namespaces the principal may read, as ``list_memories`` scopes them."""
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput("session_id is required: the session to list.", field="session_id")
    return (list_memories(principal, namespace).filter(session_id=session_id)
            .exclude(event_type="").order_by(*ORDERINGS["occurred_at"]))


def _clean(item: Any, prefix: str) -> dict[str, Any]:
    """One event, secrets redacted, then validated (so the limits hold for what is stored)."""
    if not isinstance(item, Mapping):
        raise InvalidInput("expected a JSON object.", field=prefix)
    data = dict(item)
    if isinstance(data.get("text"), str):
        data["text"] = redact(data["text"])
    if "metadata" in data:
        data["metadata"] = redact_value(data["metadata"])
    if isinstance(data.get("tags"), list):
        data["tags"] = [redact(tag) if isinstance(tag, str) else tag for tag in data["tags"]]
    return schemas.validate(event_schemas.EventInput, data, prefix=prefix)


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """A validated event as a memory's fields."""
    return {"content": event_schemas.content_of(event), "kind": MemoryKind.EVENT,
            "event_type": event["event_type"], "role": event["role"],
            "session_id": event["session_id"], "occurred_at": event["occurred_at"],
            "metadata": event["metadata"], "tags": event["tags"],
            "importance": event["importance"]}


def _signature(memory: Memory) -> tuple[str, str, str, str]:
    """What makes a stored event the same event: who, where, what type, what text."""
    return (memory.agent_id, memory.session_id, memory.event_type, memory.content_hash)


def _signature_of(principal: Principal, event: dict[str, Any],
                  ns: Namespace) -> tuple[str, str, str, str]:
    """``_signature`` of an event about to be stored (redacted and validated already, so a
    replay of the same request has the same one)."""
    return (principal.agent_id, event["session_id"], event["event_type"],
            content_hash(event_schemas.content_of(event), ns))


def _known(ns: Namespace, ids: set[str]) -> dict[str, Memory]:
    """The namespace's stored events among these client ids: id -> its memory."""
    return {row.external_id: row.memory for row in ExternalId.objects.filter(
        namespace=ns, system=ExternalId.System.EVENT, external_id__in=ids,
    ).select_related("memory__namespace")}


def _stored_meanwhile(ns: Namespace, cleaned: list[dict[str, Any]]) -> bool:
    """Whether some of these ids are stored now (by a concurrent request)."""
    return ExternalId.objects.filter(namespace=ns, system=ExternalId.System.EVENT,
                                     external_id__in={e["id"] for e in cleaned}).exists()


def _store(principal: Principal, ns: Namespace, cleaned: list[dict[str, Any]]) -> list[StoredEvent]:
    """Write the events not stored yet in one transaction of the write path (rows, keyword
    index, tag rows, their external ids, outbox, one ``event.create`` audit entry), then
    index them; answer one result per event, in order."""
    known = _known(ns, {e["id"] for e in cleaned})
    fresh: dict[str, dict[str, Any]] = {}  # client id -> the first event with it, if new
    for i, event in enumerate(cleaned):
        field = f"events[{i}].id"
        if event["id"] in known:
            if _signature(known[event["id"]]) != _signature_of(principal, event, ns):
                raise Conflict(f"event id {event['id']!r} is already stored in this namespace "
                               "with another agent, session, type or text; a retry must send "
                               "the same event.", field=field)
        elif event["id"] in fresh:
            if _signature_of(principal, fresh[event["id"]], ns) != _signature_of(principal, event, ns):
                raise InvalidInput(f"event id {event['id']!r} appears twice in the batch with "
                                   "different events.", field=field)
        else:
            fresh[event["id"]] = event
    stored = dict(zip(fresh, new_memories(principal, ns, [_fields(e) for e in fresh.values()]),
                      strict=True))
    if stored:
        memories = list(stored.values())
        context.assign(ns.pk, memories)  # the turn before, indexed with each (context.py)
        embeddings = indexing.embed_memories(memories)

        def entry(written: list[Memory]) -> None:
            audit(principal, "event.create", namespace=ns, record_ids=[m.pk for m in written],
                  summary={"count": len(written), "requested": len(cleaned),
                           "existing": len(cleaned) - len(written)})

        external = [ExternalId(namespace=ns, system=ExternalId.System.EVENT, external_id=event_id,
                               memory=memory) for event_id, memory in stored.items()]
        with writes.atomic() as write:  # the write path (apps/memories/writes.py) indexes on leaving
            write.create(ns, memories, embeddings, actor=principal, audit=entry,
                         external_ids=external)
    results = []
    for event in cleaned:
        event_id = event["id"]
        memory = stored.pop(event_id, None)  # the first result for a new id says created
        if memory is not None:
            results.append(StoredEvent(memory, event_id, created=True))
            known[event_id] = memory
        else:
            results.append(StoredEvent(known[event_id], event_id, created=False))
    return results
