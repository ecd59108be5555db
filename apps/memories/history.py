"""Memories as they were at a past moment: what an as-of read shows (issue 20).

``GET /api/v1/memories/{id}?as_of=T`` and ``POST /api/v1/recall`` with ``as_of`` answer
"what did the namespace hold at T": memories stored after T are left out and an edited
memory is shown at the version in force at T — the highest version whose edit's
``changed_at`` is at or before T (version 1: as stored), every editable field as it was
then, ``version`` that version and ``updated_at`` the time of its edit.

The state is rebuilt the way ``services.editing.state_at`` rebuilds a version (each later
edit's ``before`` values restored, newest first), but from edit rows loaded for many
memories at once, and as model values rather than JSON forms. It is its own function,
not ``state_at``: that one reads one memory's versions per call (recall rebuilds up to
``recall.as_of.MAX_EDITED`` memories) and returns JSON text for dates.

**A snapshot is an unsaved copy, never the row.** ``at``/``snapshots_at`` return a new
``Memory`` instance carrying the past values; the live instance they were made from is
left untouched, so nothing of the past leaks into a later use of it. A snapshot keeps
the memory's id (doors show and link it by id) and is ``_state.adding``: were anyone to
``save()`` it, Django would INSERT (the primary key has a default), which the existing
row refuses with an IntegrityError — it cannot overwrite the memory.

What is not history: deleted and erased memories are gone (erasure wins: nothing of them
is kept to rebuild from), expired ones are never served, and the recall statistics
(``access_count``, ``last_recalled_at``) are today's counters, not versioned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping

from django.db.models import Field, QuerySet
from django.utils import timezone

from apps.memories.models import Memory, MemoryVersion, content_hash

#: The memory's own columns by name, to turn an edit's JSON ``before`` back into a value.
_FIELDS: dict[str, Field] = {f.name: f for f in Memory._meta.concrete_fields}


def moment(as_of: dt.datetime) -> dt.datetime:
    """The moment an as-of read looks at: ``as_of``, or now if it is later (nothing is
    known about the future, so a later moment shows what is held now)."""
    return min(as_of, timezone.now())


def at(memory: Memory, as_of: dt.datetime) -> Memory | None:
    """``memory`` as it was at ``as_of`` (None: not stored yet then). The instance itself
    when no edit came after ``as_of``, else an unsaved snapshot; one query for its edits."""
    if memory.created_at > as_of:
        return None
    return snapshots_at({memory.pk: memory}, as_of).get(memory.pk, memory)


def snapshots_at(memories: Mapping[uuid.UUID, Memory], as_of: dt.datetime,
                 ) -> dict[uuid.UUID, Memory]:
    """Snapshots at ``as_of`` of those ``memories`` edited after it (two queries; the
    others are as they were then and are left out of the answer). Memories stored after
    ``as_of`` are the caller's to leave out."""
    if not memories:
        return {}
    ids = list(memories)
    later: dict[uuid.UUID, list[MemoryVersion]] = {}
    in_force: dict[uuid.UUID, tuple[int, dt.datetime]] = {}
    # The edits to undo: every version above the one in force at as_of. With versions
    # in time order (the write path numbers them as it writes) those are exactly the
    # rows changed after as_of; the second query finds the version in force, so an
    # out-of-order row (an import's history) is undone only if it is above it.
    for edit in (MemoryVersion.objects.filter(memory_id__in=ids, changed_at__gt=as_of)
                 .order_by("memory_id", "-version")):
        later.setdefault(edit.memory_id, []).append(edit)
    if not later:
        return {}
    for memory_id, version, changed_at in (MemoryVersion.objects
                                           .filter(memory_id__in=list(later), changed_at__lte=as_of)
                                           .values_list("memory_id", "version", "changed_at")):
        if version > in_force.get(memory_id, (0, None))[0]:
            in_force[memory_id] = (version, changed_at)
    found = {}
    for memory_id, edits in later.items():
        version, changed_at = in_force.get(memory_id, (1, None))
        undo = [edit for edit in edits if edit.version > version]
        if undo:
            memory = memories[memory_id]
            found[memory_id] = snapshot(memory, undo, version, changed_at or memory.created_at)
    return found


def snapshot(memory: Memory, undo: Iterable[MemoryVersion], version: int,
             updated_at: dt.datetime) -> Memory:
    """An unsaved copy of ``memory`` with the edits ``undo`` reverted (newest first)."""
    values = {f.attname: getattr(memory, f.attname) for f in Memory._meta.concrete_fields}
    for edit in sorted(undo, key=lambda e: e.version, reverse=True):
        for name, change in (edit.changes or {}).items():
            field = _FIELDS.get(name)
            if field is None or field.primary_key or not isinstance(change, Mapping):
                continue
            values[field.attname] = _value(field, change.get("before"))
    values["version"] = version
    values["updated_at"] = updated_at
    if values["content"] != memory.content:
        values["content_hash"] = content_hash(values["content"], memory.namespace_id)
    copy = Memory(**values)
    if Memory.namespace.is_cached(memory):
        copy.namespace = memory.namespace  # doors format the row with it: no extra query
    return copy


def _value(field: Field, stored):
    """An edit's JSON ``before`` (dates as ISO text) as the field's value."""
    if stored is None:
        return None
    value = field.to_python(stored)
    if isinstance(value, dt.datetime) and timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def edited_ids(memories: QuerySet[Memory], as_of: dt.datetime, limit: int) -> list[uuid.UUID]:
    """Of ``memories`` (one source's: its namespace, within a grant's scope, narrowed by
    filters edits never change), those stored at or before ``as_of`` and edited after it,
    at most ``limit`` (ask for one more to tell whether there are more)."""
    return list(MemoryVersion.objects
                .filter(memory__in=memories.filter(created_at__lte=as_of), changed_at__gt=as_of)
                .order_by("memory_id").values_list("memory_id", flat=True).distinct()[:limit])
