"""Conversation context: a memory is indexed with the memory before it in its session.

A turn such as "Yes, I did!" or "That was in May" means nothing alone: what it answers
is in the turn before. When ``MEMORYWEB_INDEX_CONTEXT`` is on (the default), ingest
links each new memory that has a ``session_id`` to the memory before it in that session
(the previous item of the same batch, else the session's latest stored memory) as its
``context_memory``, and the indexes see both:

- the embedding (:func:`index_vectors`) mixes the content's vector with the context's:
  ``normalize(e(content) + alpha * e(context))``, alpha = ``MEMORYWEB_CONTEXT_MIX_WEIGHT``, each
  text embedded alone and its vector kept (apps/memories/plain_vectors.py), so a turn
  costs the model one text, not two. ``MEMORYWEB_CONTEXT_EMBEDDING=text`` embeds instead
  ``content`` followed by the context's first ``CONTEXT_CHARS`` characters
  (:func:`index_texts`): a little better recall, about twice the model's time;
- the keyword index holds the context's words in a column of their own, which recall
  weighs by ``MEMORYWEB_LEXICAL_CONTEXT_WEIGHT`` against the memory's own words (SQLite:
  a ``context`` column of the namespace's FTS5 table; PostgreSQL: ``context_search``).

The memory row itself never holds the context's text, only the link. The context's words
are derived data of *that* memory inside this memory's index entries: the write path
re-indexes the memories that use a memory as context when it is deleted, erased or its
content edited (:func:`dependents`), and the store registry's ``conversation_context``
store checks that no index entry still carries an erased memory's words.

Chosen on LoCoMo's tuning part (docs/recall.md): hybrid recall@5 0.649 -> 0.710, MRR
0.533 -> 0.584 with the previous turn and a context weight of 0.25 (context words at
full weight: MRR 0.525, the memory's own hits drowned by its neighbours'). The next
turn as well was worse (embedded with both: recall@5 0.690 against 0.700), and is not
known when a turn is stored anyway. The mix (bench/context_mix.py; alpha 0.4 chosen on the
tuning part) keeps most of that gain (reporting part R@5 0.702 text, 0.694 mix, 0.634
without context) for half the embedding work at ingest (docs/recall.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Max

from apps.memories import plain_vectors, sealing
from apps.memories.embeddings import get_embedder
from apps.memories.lexical import CONTEXT_CHARS
from apps.memories.models import Memory

_CONTEXT_FIELD = Memory._meta.get_field("context_memory")


def enabled() -> bool:
    return bool(settings.MEMORYWEB_INDEX_CONTEXT)


def index_text(content: str, context: str | None) -> str:
    """What is embedded for a memory: its content, then its context's first characters."""
    if not context:
        return content
    return f"{content}\n\n{context[:CONTEXT_CHARS]}"


def assign(namespace_id: int, memories: Sequence[Memory]) -> None:
    """Link each new memory (unsaved, in the order given) that has a session to the
    memory before it in that session: the previous one given, else the session's latest
    stored memory (:func:`latest_stored`). Nothing when off."""
    if not enabled():
        return
    previous: dict[str, Memory | None] = dict(latest_stored(
        namespace_id, list(dict.fromkeys(m.session_id for m in memories if m.session_id))))
    for memory in memories:
        session = memory.session_id
        if not session:
            continue
        before = previous.get(session)
        if before is not None:
            memory.context_memory = before
        previous[session] = memory


def latest_stored(namespace_id: int, sessions: Sequence[str]) -> dict[str, Memory]:
    """Each session's latest stored memory (by ``created_at``, then id), two queries per
    400 sessions: a batch of interleaved conversations names hundreds, and a query each
    cost about 1.6 ms of the batch's time per memory (profiled, 2026-12-07)."""
    found: dict[str, Memory] = {}
    for start in range(0, len(sessions), 400):  # 2 x 400 + 1 parameters: under SQLite's 999
        part = sessions[start:start + 400]
        latest = dict(Memory.objects.filter(namespace_id=namespace_id, session_id__in=part)
                      .order_by().values("session_id").annotate(at=Max("created_at"))
                      .values_list("session_id", "at"))
        if not latest:
            continue
        rows = (Memory.objects.filter(namespace_id=namespace_id, session_id__in=list(latest),
                                      created_at__in=set(latest.values()))
                .only("pk", "namespace_id", "content", "session_id", "created_at"))
        for row in sorted(rows, key=lambda m: str(m.pk)):
            if row.created_at == latest[row.session_id]:
                found[row.session_id] = row
    return found


def remap(memories: Iterable[Memory], replaced: Mapping[Any, Memory]) -> None:
    """A context that is not stored after all (a near-duplicate skipped, or content a
    concurrent ingest stored first) is replaced by the memory that took its place."""
    for memory in memories:
        if memory.context_memory_id in replaced:
            memory.context_memory = replaced[memory.context_memory_id]


def index_texts(memories: Sequence[Memory]) -> list[str]:
    """The texts to embed for these memories (:func:`index_text`), their contexts'
    contents read in one query unless already loaded on the instances."""
    wanted = {m.context_memory_id for m in memories
              if m.context_memory_id is not None and not _CONTEXT_FIELD.is_cached(m)}
    contents: dict[Any, str] = dict(
        sealing.texts(Memory.objects.filter(pk__in=wanted))) if wanted else {}
    texts = []
    for memory in memories:
        context = None
        if memory.context_memory_id is not None:
            context = (memory.context_memory.content if _CONTEXT_FIELD.is_cached(memory)
                       and memory.context_memory is not None
                       else contents.get(memory.context_memory_id))
        texts.append(index_text(memory.content, context))
    return texts


def dependents(namespace_id: int, ids: Sequence[uuid.UUID | str]) -> list[Memory]:
    """The memories of the namespace (other than ``ids``) indexed with one of ``ids`` as
    their context: to re-index when those are deleted or their content changes."""
    from apps.memories.stores import chunks

    wanted = {uuid.UUID(str(i)) for i in ids}
    found: list[Memory] = []
    for part in chunks(sorted(wanted, key=str)):
        found += [m for m in Memory.objects.select_related("namespace")
                  .in_namespace_checked(namespace_id).filter(context_memory_id__in=part)
                  if m.pk not in wanted]
    return found


def index_vectors(memories: Sequence[Memory]) -> np.ndarray:
    """The vectors to index for these memories, in order (unit length): each content's
    vector mixed with its context's (:mod:`apps.memories.plain_vectors` keeps and supplies
    the plain ones), or, with ``MEMORYWEB_CONTEXT_EMBEDDING=text``, the embedding of
    :func:`index_texts`. Raises what the embedder raises."""
    if not memories:
        return np.zeros((0, get_embedder().dimension), dtype=np.float32)
    if not plain_vectors.mixing():
        return get_embedder().embed(index_texts(memories))
    own = plain_vectors.of(memories)
    row_of = {m.pk: i for i, m in enumerate(memories)}
    wanted = {m.context_memory_id for m in memories if m.context_memory_id is not None}
    outside = wanted - row_of.keys()
    contexts: dict[Any, np.ndarray] = {pk: own[i] for pk, i in row_of.items() if pk in wanted}
    if outside:  # stored turns before the batch: their kept vectors, else embedded now
        before = list(Memory.objects.filter(pk__in=outside)
                      .only("pk", "namespace_id", "content", "content_hash"))
        contexts.update(zip((m.pk for m in before), plain_vectors.of(before), strict=True))
    return mix(own, [contexts.get(m.context_memory_id) for m in memories])


def mix(own: np.ndarray, contexts: Sequence[np.ndarray | None]) -> np.ndarray:
    """``normalize(own + alpha * context)`` row by row (alpha ``MEMORYWEB_CONTEXT_MIX_WEIGHT``); a
    row without a context is its own vector."""
    alpha = float(settings.MEMORYWEB_CONTEXT_MIX_WEIGHT)
    out = np.array(own, dtype=np.float32, copy=True)
    for i, vector in enumerate(contexts):
        if vector is not None:
            out[i] = out[i] + alpha * vector
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms == 0, 1, norms)).astype(np.float32)


def mixed_texts(contents: Sequence[str], contexts: Sequence[str | None]) -> np.ndarray:
    """Index vectors of texts not kept as memories (an as-of recall's past versions), as
    :func:`index_vectors` would build them: nothing cached, each text embedded."""
    if not plain_vectors.mixing():
        return get_embedder().embed([index_text(c, x) for c, x in zip(contents, contexts,
                                                                       strict=True)])
    present = [x for x in contexts if x]
    embedded = get_embedder().embed(list(contents) + present)
    own, rest = embedded[:len(contents)], iter(embedded[len(contents):])
    return mix(own, [next(rest) if x else None for x in contexts])
