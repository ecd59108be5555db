"""What the memory services answer besides the memory itself, as values beside it.

A store says whether it stored anything (``StoredMemory.duplicate``) and how close the
near-duplicate it found was; a read says whether the memory is the caller's own or
another namespace's, shared through a grant (``SharedMemory``). None of this is a
property of the memory: it is what one call found. Written onto the model instance, it
leaked into the next use of that instance (a batch repeating content needed copies of
the row), and a read path that forgot to mark a shared memory showed the grantor's own
statistics. As result objects the service states it once, where it knows, and
:mod:`apps.memories.representation` picks the shape from the type.

Recall's hits (``RecallHit``, in :mod:`apps.memories.recall.results`) hold a
``Memory | SharedMemory`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.memories.models import Memory


@dataclass(frozen=True)
class StoredMemory:
    """One item of a store (``ingest``, ``ingest_many``, ``ingest_and_recall``), in request order.

    ``memory`` is the row stored now, or the one that already held this content
    (``duplicate``): identical content already live, a repeat within the batch, an
    Idempotency-Key replay, or, under the skip policy, the near-duplicate that stands in.
    """

    memory: Memory
    #: Nothing new was stored for this item; ``memory`` is the existing one.
    duplicate: bool
    #: Cosine similarity to the near-duplicate found (linked to, or standing in), if any.
    near_duplicate_similarity: float | None = None


@dataclass(frozen=True)
class StoredEvent:
    """One event of ``store_events``, in request order: the memory that holds it, the
    client's id for it, and whether this call stored it (False: the id was stored
    before, or earlier in the same batch, and ``memory`` is that event)."""

    memory: Memory
    event_id: str
    created: bool


@dataclass(frozen=True)
class SharedMemory:
    """A memory of another namespace, read through a sharing grant (``get``, recall with
    ``include_shared``). Its representation leaves out the grantor's own statistics and
    links (``access_count``, ``last_recalled_at``, ``near_duplicate_of``): the type, not
    a flag someone must remember to set, decides that."""

    memory: Memory


#: What a read answers: the caller's own memory as it is, or another namespace's, wrapped.
Readable = Memory | SharedMemory


def memory_of(item: Readable) -> Memory:
    """The memory behind a read's answer, for a door that needs its fields (its id, to
    edit it), not its representation."""
    return item.memory if isinstance(item, SharedMemory) else item
