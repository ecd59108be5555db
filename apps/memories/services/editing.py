"""Changing memories: ``update`` (one memory, re-embedded only when its content changes),
the dashboard's batched edits (``edit_many`` with ``retag_many`` and ``set_kind_many``)
and ``revert`` to an earlier version (rebuilt by ``state_at``). Every change records a
version, an audit entry, an outbox row and a live event, all written by the write path
(apps/memories/writes.py); these functions decide what changes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput, NotFound, ServiceError
from apps.core.roles import Action
from apps.core.scoping import namespace_check
from apps.memories import indexing, plain_vectors, schemas, writes
from apps.memories.models import Memory, MemoryKind
from apps.memories.services.access import (
    _editable,
    _pk,
    check_append_only,
    check_kind,
    check_writable,
)
from apps.ops import metrics
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize

#: Fields an edit may change and that a version records.
EDITABLE_FIELDS = (
    "content", "kind", "tags", "metadata", "importance", "confidence",
    "expires_at", "valid_from", "valid_until", "occurred_at",
)


@metrics.observed("update")
def update(principal: Principal, memory_id: Any, data: Mapping[str, Any], *,
           partial: bool = True, reverted_to: int | None = None) -> Memory:
    """Edit a memory (team admin) and record a version of what changed.

    Only ``content`` is embedded: an edit that leaves it alone (tags, kind, metadata…)
    updates the vector index's filter fields and keeps the stored vector (a ``metadata``
    outbox op), without running the model. ``reverted_to`` (set by ``revert``) is noted
    in the audit entry.
    """
    memory = _editable(principal, memory_id)
    cleaned = schemas.validate(schemas.MemoryUpdate, data, partial=partial)
    if not partial:  # PUT replaces every editable field; omitted ones take defaults
        cleaned = {name: cleaned.get(name) for name in EDITABLE_FIELDS}
        if memory.is_event and "kind" not in data:
            cleaned["kind"] = MemoryKind.EVENT  # an event's kind is no default: it stays
    if "kind" in cleaned:
        check_kind(memory, cleaned["kind"])
    embedded_text = cleaned.get("content", memory.content)
    embeddings = None
    probe = Memory(content=embedded_text, context_memory_id=memory.context_memory_id)
    if embedded_text != memory.content:  # with its conversation context, as ingest embeds it
        embeddings = indexing.embed_memories([probe])

    def entry(edited: Memory, changes: dict[str, Any]) -> None:
        summary = {"fields": sorted(changes), "version": edited.version}
        if reverted_to is not None:
            summary["reverted_to"] = reverted_to
        audit(principal, "memory.update", namespace=edited.namespace, record_ids=[edited.pk],
              summary=summary)

    with writes.atomic() as write:  # the write path (apps/memories/writes.py) indexes on leaving
        memory = (Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                  .get(pk=memory.pk))
        valid_from = cleaned.get("valid_from", memory.valid_from)
        valid_until = cleaned.get("valid_until", memory.valid_until)
        if valid_from and valid_until and valid_until <= valid_from:
            raise InvalidInput("must be after valid_from.", field="valid_until")
        changes = {
            name: {"before": _jsonable(getattr(memory, name)), "after": _jsonable(value)}
            for name, value in cleaned.items()
            if getattr(memory, name) != value
        }
        if not changes:
            return memory
        if cleaned.get("content", memory.content) != embedded_text:
            embeddings = None  # a concurrent edit changed the content meanwhile: embed it anew
        if memory.context_memory_id != probe.context_memory_id:
            embeddings = None  # its context was deleted meanwhile: mixed in, it would stay
        # the new content's own vector, kept after the commit (apps/memories/plain_vectors.py)
        setattr(memory, plain_vectors.PENDING, getattr(probe, plain_vectors.PENDING, None))
        write.update(memory, cleaned, changes, embeddings=embeddings, actor=principal, audit=entry)
    return memory


#: Fields a batched edit may change: none of them is embedded (``content`` is).
BATCH_EDITABLE = frozenset(EDITABLE_FIELDS) - {"content"}


#: Memories per transaction of a batched edit (bounds how long SQLite's write lock is held).
BATCH_EDIT_CHUNK = 500


@dataclass
class BatchEdit:
    """What a batched edit did: the memories changed, and (id, reason) for each refused."""

    updated: list[Memory] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


@metrics.observed("update")
def retag_many(principal: Principal, memory_ids: Sequence[Any], *, add: Sequence[str] = (),
               remove: Sequence[str] = ()) -> BatchEdit:
    """Add and remove tags on many memories in one batch (the dashboard's bulk re-tag)."""
    dropped = set(remove)

    def change(memory: Memory) -> dict[str, Any] | None:
        tags = [t for t in memory.tags if t not in dropped]
        tags += [t for t in add if t not in tags]
        return {"tags": tags} if tags != memory.tags else None

    return edit_many(principal, memory_ids, change)


@metrics.observed("update")
def set_kind_many(principal: Principal, memory_ids: Sequence[Any], kind: str) -> BatchEdit:
    """Give many memories one kind in one batch (the dashboard's bulk change of kind)."""
    return edit_many(principal, memory_ids, lambda m: {"kind": kind} if m.kind != kind else None)


def edit_many(principal: Principal, memory_ids: Sequence[Any],
              change: Callable[[Memory], Mapping[str, Any] | None]) -> BatchEdit:
    """Apply ``change(memory)`` (the fields to set, or None to leave it) to many memories.

    Why not ``update`` in a loop: each call embedded and indexed one memory, so re-tagging
    223 memories took 17.7 s. Here no field is embedded (BATCH_EDITABLE), so nothing runs
    the model, and SQL and the index are written per chunk. Each changed memory still
    gets its version row, its ``memory.update`` audit entry, a ``metadata`` outbox row
    (crash-safe: a failed index write is replayed by the drain) and its live event.
    A memory the caller may not edit, or whose new values are invalid, is refused alone
    (listed in ``errors``) and the others go ahead, as the one-by-one loop did.
    """
    result = BatchEdit()
    pks: list[uuid.UUID] = []
    for memory_id in memory_ids:
        try:
            pks.append(_pk(memory_id))
        except NotFound as exc:
            result.errors.append((str(memory_id), exc.message))
    pks = list(dict.fromkeys(pks))
    readable = namespace_check(principal)  # by primary key (scoping.namespace_check)
    visible = {pk for pk, ns_id in Memory.objects.filter(pk__in=pks).values_list("pk", "namespace_id")
               if readable(ns_id)}
    result.errors += [(str(pk), "memory not found.") for pk in pks if pk not in visible]
    pks = [pk for pk in pks if pk in visible]
    for start in range(0, len(pks), BATCH_EDIT_CHUNK):
        _edit_chunk(principal, pks[start:start + BATCH_EDIT_CHUNK], change, result)
    return result


def _edit_chunk(principal: Principal, pks: Sequence[uuid.UUID],
                change: Callable[[Memory], Mapping[str, Any] | None], result: BatchEdit) -> None:
    refused: dict[int, str] = {}
    edited: list[tuple[Memory, dict[str, Any], dict[str, Any]]] = []  # memory, values, changes
    entry = _edit_entry(principal)
    with writes.atomic() as write:  # the write path (apps/memories/writes.py) indexes on leaving
        memories = list(Memory.objects.select_for_update(of=("self",)).select_related("namespace")
                        .filter(pk__in=list(pks)).order_by("pk"))
        for memory in memories:
            if memory.is_event:  # refused alone, saying why (append-only for agents)
                try:
                    check_append_only(principal, memory.namespace_id, memory.is_event)
                except ServiceError as exc:
                    result.errors.append((str(memory.pk), exc.message))
                    continue
            if memory.namespace_id not in refused:
                try:
                    authorize(principal, memory.namespace_id, Action.EDIT)
                    check_writable(memory.namespace)
                except ServiceError as exc:
                    refused[memory.namespace_id] = exc.message
            if memory.namespace_id in refused:
                result.errors.append((str(memory.pk), refused[memory.namespace_id]))
                continue
            data = change(memory)
            if not data:
                continue
            if set(data) - BATCH_EDITABLE:
                raise ValueError(f"edit_many cannot change {sorted(set(data) - BATCH_EDITABLE)}")
            try:
                cleaned = schemas.validate(schemas.MemoryUpdate, data, partial=True)
                if "kind" in cleaned:
                    check_kind(memory, cleaned["kind"])
            except ServiceError as exc:
                result.errors.append((str(memory.pk), exc.message))
                continue
            valid_from = cleaned.get("valid_from", memory.valid_from)
            valid_until = cleaned.get("valid_until", memory.valid_until)
            if valid_from and valid_until and valid_until <= valid_from:
                result.errors.append((str(memory.pk), "valid_until must be after valid_from."))
                continue
            changes = {name: {"before": _jsonable(getattr(memory, name)), "after": _jsonable(value)}
                       for name, value in cleaned.items() if getattr(memory, name) != value}
            if not changes:
                continue
            edited.append((memory, cleaned, changes))
        if not edited:
            return
        updated = write.update_many(edited, actor=principal, audit=entry)
    result.updated += updated  # indexed and announced per namespace as the block was left


def _edit_entry(principal: Principal) -> Callable[[Memory, dict[str, Any]], None]:
    """A batched edit's audit entry, one per memory (as ``update`` records)."""
    def entry(memory: Memory, changes: dict[str, Any]) -> None:
        audit(principal, "memory.update", namespace=memory.namespace, record_ids=[memory.pk],
              summary={"fields": sorted(changes), "version": memory.version})
    return entry


def state_at(memory: Memory, version: int) -> dict[str, Any]:
    """The editable fields as they were at ``version`` (1 = as stored), rebuilt by undoing
    each later edit's changes, newest first. Values are JSON forms (dates as ISO text)."""
    if not 1 <= version <= memory.version:
        raise InvalidInput(f"version must be between 1 and {memory.version}.", field="version")
    state = {name: _jsonable(getattr(memory, name)) for name in EDITABLE_FIELDS}
    for edit in memory.versions.filter(version__gt=version).order_by("-version"):
        for name, change in edit.changes.items():
            if name in state:
                state[name] = change["before"]
    return state


@metrics.observed("revert")
def revert(principal: Principal, memory_id: Any, version: int) -> Memory:
    """Make a memory's editable fields what they were at ``version`` (team admin).

    A revert is a new edit, not a rewind: it records a new version (with ``reverted_to``
    in its audit entry), re-indexes and is evented like any update, so history is kept.
    """
    memory = _editable(principal, memory_id)
    target = state_at(memory, version)
    current = {name: _jsonable(getattr(memory, name)) for name in EDITABLE_FIELDS}
    changed = {name: value for name, value in target.items() if current[name] != value}
    if not changed:
        return memory
    return update(principal, memory.pk, changed, reverted_to=version)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
