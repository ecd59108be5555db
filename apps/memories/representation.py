"""A memory as every door shows it: REST, the WebSocket feed and its answers, MCP tools,
the export and the drop-in routes' times. Plain functions over the service results, so
a door formats what the service answered without reaching into the REST app's
serializers (``apps.memories.api.serializers`` delegates here and only adds the OpenAPI
schema).

The shape follows the result's type: a ``Memory`` is the caller's own and shown whole; a
``SharedMemory`` (another namespace's, read through a grant) leaves out the grantor's own
statistics and links; a ``StoredMemory`` adds how dedup went; a ``RecallHit`` adds its
score and whether it is shared. Rows are built by hand, not by DRF's generic path: that
cost ~0.2 ms per row, which dominated a recall's response time, and live events format
one row per written memory. Nothing here queries the database beyond ``namespace``
(which every service loads with the memory).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apps.memories.models import Memory
from apps.memories.results import Readable, SharedMemory, StoredEvent, StoredMemory

if TYPE_CHECKING:
    from apps.memories.recall.results import RecallHit

#: A memory row's fields, in order (``MemorySerializer`` declares them for the schema).
MEMORY_FIELDS = (
    "id", "namespace", "content", "kind", "tags", "metadata", "agent_id", "session_id",
    "importance", "confidence", "created_at", "updated_at", "last_recalled_at",
    "access_count", "expires_at", "valid_from", "valid_until", "occurred_at",
    "near_duplicate_of", "content_hash", "version", "event_type", "role", "superseded_by",
)
#: What a shared memory's row leaves out (null): the grantor's own statistics and links.
GRANTOR_ONLY = ("access_count", "last_recalled_at", "near_duplicate_of", "superseded_by")


def iso_datetime(value: datetime | None) -> str | None:
    """DRF's DateTimeField rendering: ISO 8601, UTC written as Z (every door formats
    times with it: REST, the drop-in routes, live events)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def memory_row(item: Readable) -> dict[str, Any]:
    """A memory as the API returns it: whole for the caller's own, without the grantor's
    statistics and links for a ``SharedMemory``."""
    if isinstance(item, SharedMemory):
        row = _row(item.memory)
        row.update(dict.fromkeys(GRANTOR_ONLY))
        return row
    if not isinstance(item, Memory):  # a StoredMemory or a hit: say so, do not guess
        raise TypeError(f"memory_row takes a Memory or a SharedMemory, not {type(item).__name__}.")
    return _row(item)


def stored_row(result: StoredMemory) -> dict[str, Any]:
    """A stored (or deduplicated) memory as a store answers it: the row, ``duplicate``
    and, when a near-duplicate was found, ``near_duplicate_similarity``."""
    row = {**memory_row(result.memory), "duplicate": result.duplicate}
    if result.near_duplicate_similarity is not None:
        row["near_duplicate_similarity"] = round(result.near_duplicate_similarity, 6)
    return row


def event_row(memory: Memory, event_id: str | None) -> dict[str, Any]:
    """A conversation event as a session lists it: its memory's row and ``event_id``, the
    client's id for it (read beside the page by the caller: an external id)."""
    return {**memory_row(memory), "event_id": event_id}


def stored_event_row(result: StoredEvent) -> dict[str, Any]:
    """One event of a store's answer: the client's id, the memory holding it, and
    whether this request stored it."""
    return {"id": result.event_id, "memory_id": str(result.memory.pk), "created": result.created}


def hit_row(hit: RecallHit, explain: bool = False) -> dict[str, Any]:
    """A recall hit: its memory's row (a shared one's without the grantor's statistics),
    ``score``, ``shared`` and, with ``explain``, each channel's part."""
    row = memory_row(hit.found)
    row["score"] = round(hit.score, 6)
    row["shared"] = hit.shared
    if explain:
        row["explain"] = hit.parts  # channel -> {raw, rank, contribution}
    return row


def hit_rows(hits: Iterable[RecallHit], explain: bool = False) -> list[dict[str, Any]]:
    """Recall hits as every door returns them (``hit_row`` each, in rank order)."""
    return [hit_row(hit, explain) for hit in hits]


def _row(m: Memory) -> dict[str, Any]:
    return {
        "id": str(m.pk), "namespace": m.namespace.slug, "content": m.content, "kind": m.kind,
        "tags": m.tags, "metadata": m.metadata, "agent_id": m.agent_id,
        "session_id": m.session_id, "importance": m.importance, "confidence": m.confidence,
        "created_at": iso_datetime(m.created_at), "updated_at": iso_datetime(m.updated_at),
        "last_recalled_at": iso_datetime(m.last_recalled_at), "access_count": m.access_count,
        "expires_at": iso_datetime(m.expires_at), "valid_from": iso_datetime(m.valid_from),
        "valid_until": iso_datetime(m.valid_until), "occurred_at": iso_datetime(m.occurred_at),
        "near_duplicate_of": str(m.near_duplicate_of_id) if m.near_duplicate_of_id else None,
        "content_hash": m.content_hash, "version": m.version, "event_type": m.event_type,
        "role": m.role,
        "superseded_by": str(m.superseded_by_id) if m.superseded_by_id else None,
    }
