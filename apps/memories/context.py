"""Conversation context: a memory is indexed with the memory before it in its session.

A turn such as "Yes, I did!" or "That was in May" means nothing alone: what it answers
is in the turn before. When ``MEMORYWEB_INDEX_CONTEXT`` is on (the default), ingest
links each new memory that has a ``session_id`` to the memory before it in that session
(the previous item of the same batch, else the session's latest stored memory) as its
``context_memory``, and the indexes see both:

- the embedding is of ``content`` followed by the context's first ``CONTEXT_CHARS``
  characters (:func:`index_texts`);
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
known when a turn is stored anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings

from apps.memories import sealing
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
    stored memory (one indexed query per session of the batch). Nothing when off."""
    if not enabled():
        return
    previous: dict[str, Memory | None] = {}
    for memory in memories:
        session = memory.session_id
        if not session:
            continue
        if session not in previous:
            previous[session] = (Memory.objects.filter(namespace_id=namespace_id, session_id=session)
                                 .order_by("-created_at").only("pk", "namespace_id", "content").first())
        before = previous[session]
        if before is not None:
            memory.context_memory = before
        previous[session] = memory


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
                  .filter(namespace_id=namespace_id, context_memory_id__in=part)
                  if m.pk not in wanted]
    return found
