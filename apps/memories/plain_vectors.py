"""Each session memory's content embedded alone ("plain"), kept beside the index.

With conversation context mixed into the vector (apps/memories/context.py,
``MEMORYWEB_CONTEXT_EMBEDDING=mix``), the vector Chroma holds for a turn is
``normalize(e(content) + alpha * e(previous turn's content))``. Two things need a turn's plain
vector after it is stored: the next turn of its session, whose mix reads it, and
consolidation, which compares contents alone (apps/lifecycle/consolidation.py). Embedding
it again costs a model call each time (MiniLM int8: about 7 ms of CPU for a short text
here; 377 s of a 100,000-memory consolidation's CPU); a row read costs nothing.

It is a cache, SQL the truth: a row is used only while its ``content_hash`` and ``model``
are the memory's and the embedder's, so an edit (or a move to another namespace, whose
hash differs) makes it stale, never wrong; a missing or stale row is embedded again. The
write path stores a row when it embeds a memory's content (:func:`save`, from
``indexing``), only for memories with a session (the ones a later turn may take as its
context) while context is indexed by mixing, and deletes it when the content changes
(:func:`forget`); consolidation keeps those it embeds, in either mode. A change of hash
alone (encryption turned on, a move) rewrites the rows' hash (:func:`rehash`): no row
keeps a hash its memory gave up. Rows go with their memory (SQL cascade: erasure reaches
them in its delete statement, registry store ``plain_vectors``). Like Chroma's, these
vectors are not sealed in an encrypted namespace (docs/encryption.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from apps.memories.embeddings import get_embedder
from apps.memories.models import Memory, PlainVector
from apps.memories.stores import chunks

log = logging.getLogger(__name__)

#: The instance attribute holding ``(content, vector)``: a plain vector embedded for that
#: content and not yet stored (set by :func:`of`, read by :func:`save`, which keeps it
#: only while the memory still holds that content).
PENDING = "_plain_vector"


def mixing() -> bool:
    """Whether context is indexed as a vector mix (and plain vectors are kept)."""
    return bool(settings.MEMORYWEB_INDEX_CONTEXT) and \
        settings.MEMORYWEB_CONTEXT_EMBEDDING == "mix"


def _decode(blob: bytes | memoryview, dimension: int) -> np.ndarray | None:
    data = bytes(blob)
    if len(data) != dimension * 4:
        return None
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def stored(hashes: Mapping[Any, str]) -> dict[Any, np.ndarray]:
    """The valid stored plain vector of each memory (primary key -> its current content
    hash) that has one: written for that hash by the current model."""
    embedder = get_embedder()
    found: dict[Any, np.ndarray] = {}
    for part in chunks(list(hashes)):
        rows = (PlainVector.objects.filter(memory_id__in=part, model=embedder.name)
                .values_list("memory_id", "content_hash", "vector"))
        for pk, digest, blob in rows:
            if hashes.get(pk) == digest and (vector := _decode(blob, embedder.dimension)) is not None:
                found[pk] = vector
    return found


def of(memories: Sequence[Memory]) -> np.ndarray:
    """The plain vectors of these memories' current contents, in order: the stored row
    where valid, else embedded now (one model call for all of them; each embedded
    instance carries its vector in :data:`PENDING` for :func:`save`). Raises what the
    embedder raises."""
    embedder = get_embedder()
    out = np.zeros((len(memories), embedder.dimension), dtype=np.float32)
    # rows only of stored memories (an instance being inserted has none to look up)
    found = stored({m.pk: m.content_hash for m in memories
                    if not m._state.adding and m.pk is not None and m.content_hash})
    missing = []
    for i, memory in enumerate(memories):
        vector = found.get(memory.pk)
        if vector is None:
            missing.append(i)
        else:
            out[i] = vector
            setattr(memory, PENDING, None)
    if missing:
        embedded = embedder.embed([memories[i].content for i in missing])
        for row, i in enumerate(missing):
            out[i] = embedded[row]
            setattr(memories[i], PENDING, (memories[i].content, embedded[row]))
    return out


def save(memories: Sequence[Memory]) -> int:
    """Store the pending plain vectors of these (committed) memories that keep one: a
    session memory while context is mixed. Best effort: a memory deleted meanwhile, or a
    database error, only leaves the cache without the row (logged). Returns rows written."""
    if not mixing():
        return 0
    entries = {m.pk: (m.content_hash, pending[1]) for m in memories
               if (pending := getattr(m, PENDING, None)) is not None
               and pending[0] == m.content and (m.session_id or m.context_memory_id)}
    written = keep(entries)
    for memory in memories:
        if memory.pk in written:
            setattr(memory, PENDING, None)
    return len(written)


def keep(entries: Mapping[Any, tuple[str, np.ndarray]]) -> set[Any]:
    """Store plain vectors (primary key -> (the content hash they were embedded for, the
    vector)) of memories that still exist, 500 a transaction (a consolidation
    may keep tens of thousands: SQLite's write lock is never held long); best effort (a
    failure is logged). Returns the keys written."""
    model = get_embedder().name
    written: set[Any] = set()
    for part in chunks(list(entries)):
        try:
            with transaction.atomic():
                # Locked (PostgreSQL; SQLite serialises writers anyway), those a delete holds
                # skipped: a row inserted after a delete collected its cascade would fail
                # that delete's foreign-key check at its commit.
                present = set(Memory.objects.select_for_update(skip_locked=True)
                              .filter(pk__in=part).values_list("pk", flat=True))
                rows = [PlainVector(memory_id=pk, content_hash=entries[pk][0], model=model,
                                    vector=np.asarray(entries[pk][1], dtype="<f4").tobytes())
                        for pk in part if pk in present]
                PlainVector.objects.bulk_create(
                    rows, update_conflicts=True, unique_fields=["memory"],
                    update_fields=["content_hash", "model", "vector"])
        except (IntegrityError, DatabaseError):
            log.warning("plain vectors of %d memories not kept", len(part), exc_info=True)
            continue
        written |= {row.memory_id for row in rows}
    return written


def rehash(ids: Sequence[Any]) -> int:
    """Give these memories' rows their memory's current content hash: the content did not
    change but its hash did (encryption turned on: keyed now; a move to another
    namespace), so the vector still holds, and a row must never keep a hash the memory
    gave up (an unkeyed SHA-256 of an encrypted memory's text). Returns rows updated."""
    from django.db.models import OuterRef, Subquery

    current = Memory.objects.filter(pk=OuterRef("memory_id")).values("content_hash")[:1]
    return sum(PlainVector.objects.filter(memory_id__in=part)
               .update(content_hash=Subquery(current)) for part in chunks(ids))


def forget(ids: Sequence[Any]) -> int:
    """Delete these memories' rows (their content changed: the old content's vector is
    not kept beside the new one). Returns rows deleted."""
    return sum(PlainVector.objects.filter(memory_id__in=part).delete()[0] for part in chunks(ids))


def drop_stale(namespace_id: int) -> int:
    """Delete the namespace's rows another model wrote, or whose memory's content
    changed since (a rebuild's tidy-up: such rows are never used). Returns rows dropped."""
    return (PlainVector.objects.filter(memory__namespace_id=namespace_id)
            .exclude(model=get_embedder().name, content_hash=F("memory__content_hash"))
            .delete()[0])
