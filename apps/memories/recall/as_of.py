"""As-of recall: rank what the namespace held at a past moment (``as_of``, issue 20).

Two things differ from a recall of today:

1. **Memories stored after the moment are left out.** The channels get one more
   filter, ``created_at <= moment`` (Chroma's ``created_ts``, SQL's ``created_at``),
   on top of ``filters.created_before`` and the rest; ``_hydrate`` checks it again on the
   rows.
2. **Memories edited after the moment are ranked and shown as they were then.** The
   vector and keyword indexes hold today's text, tags and kind, so such a memory would be
   found (or filtered out) for what it says now. The "edited since" set — memories of the
   searched namespaces stored by the moment that have a version changed after it — is
   taken out of both channels (``excluded``) and put back as it was:

   - its state at the moment is rebuilt from its versions (``apps.memories.history``),
     an unsaved snapshot; the recall filters (kind, tags, metadata, time, …) and, for a
     shared namespace, the grant's scope are evaluated on that state (the scope on
     today's state too: a memory the grantor no longer shares is not shown as it was);
   - its vector is today's stored one when its content has not changed since (the
     embedding of content and conversation context, as indexed), else its content then
     embedded again with the same model, the same way ingest embeds it; its cosine
     similarity to the query vector puts it into the vector channel's list;
   - its keyword score is its text then scored as the keyword channel would score it
     (``as_of_keywords``), put into that channel's list by score;
   - the ranking (fusion, session input, priors, reranker, MMR) and the response use the
     snapshot: the text, tags, importance and times of then.

The set is bounded (``MAX_EDITED`` memories per recall): each of them is loaded, rebuilt
and possibly embedded again, so a recall over a namespace mostly rewritten since the
moment would cost seconds. Past the bound the recall is refused (400 naming ``as_of``)
rather than answered with today's text for some memories; fields that edits never change
(``agent_id``, ``session_id``, ``created_after``/``created_before`` filters) narrow the set
before it is counted. Nothing here runs, and no query is added, for a recall without
``as_of``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.utils import timezone

from apps.core.errors import InvalidInput
from apps.memories import context, history, lexical, sealing, sharing
from apps.memories.models import Memory
from apps.memories.recall import as_of_keywords
from apps.memories.vectorstore import get_vector_store

log = logging.getLogger(__name__)

#: Memories edited since the moment that one as-of recall rebuilds at most.
MAX_EDITED = 500

Hits = list[tuple[uuid.UUID, float]]


@dataclass
class AsOf:
    """One as-of recall's moment and its "edited since" memories."""

    moment: dt.datetime
    #: Every memory of the sources stored by the moment and edited since: out of the channels.
    excluded: frozenset[uuid.UUID] = frozenset()
    #: Those that answer the recall as they were at the moment (unsaved snapshots, each
    #: with its source's namespace), by id.
    snapshots: dict[uuid.UUID, Memory] = field(default_factory=dict)
    #: Whose content is not what it was (their vectors are embedded again).
    rewritten: frozenset[uuid.UUID] = frozenset()
    #: Each snapshot's conversation context text (as indexed: the context's words now).
    contexts: dict[uuid.UUID, str] = field(default_factory=dict)
    _vectors: dict[uuid.UUID, np.ndarray] = field(default_factory=dict)
    _keywords: dict[tuple[int, str], Hits] = field(default_factory=dict)

    @classmethod
    def load(cls, sources: Sequence[sharing.Source], as_of: dt.datetime,
             filters: Mapping[str, Any]) -> AsOf:
        """The moment (``as_of``, or now if later) and the memories edited since it.
        Four queries when something was edited since; one per searched namespace when
        nothing was."""
        moment = history.moment(as_of)
        narrow: dict[str, Any] = {}
        for name in ("agent_id", "session_id"):
            if filters.get(name):
                narrow[name] = filters[name]
        if filters.get("created_after"):
            narrow["created_at__gte"] = filters["created_after"]
        if filters.get("created_before"):
            narrow["created_at__lt"] = filters["created_before"]
        # Per source, within its grants' scope: a grantor's memories outside what it shares
        # neither count towards the bound nor show how much it edits.
        ids: list[uuid.UUID] = []
        for source in sources:
            memories = source.restrict(Memory.objects.filter(namespace=source.namespace, **narrow))
            ids += history.edited_ids(memories, moment, MAX_EDITED + 1 - len(ids))
            if len(ids) > MAX_EDITED:
                break
        if len(ids) > MAX_EDITED:
            raise InvalidInput(
                f"more than {MAX_EDITED} memories of the namespaces searched were edited after "
                f"as_of; an as-of recall rebuilds at most {MAX_EDITED}. Give a later as_of, or "
                "narrow the recall with filters edits do not change (agent_id, session_id, "
                "created_after, created_before).", field="as_of")
        found = cls(moment, excluded=frozenset(ids))
        if ids:
            found._rebuild(sources, Memory.objects.in_bulk(ids), filters)
        return found

    def _rebuild(self, sources: Sequence[sharing.Source], rows: Mapping[uuid.UUID, Memory],
                 filters: Mapping[str, Any]) -> None:
        by_namespace = {source.namespace.pk: source for source in sources}
        then = history.snapshots_at(rows, self.moment)
        now = timezone.now()
        for pk, row in rows.items():
            source = by_namespace.get(row.namespace_id)
            state = then.get(pk, row)
            if (source is None or not row.is_live(now) or not state.is_live(self.moment)
                    or not source.covers(row) or not source.covers(state) or not matches(state, filters)):
                continue
            state.namespace = source.namespace
            self.snapshots[pk] = state
        self.rewritten = frozenset(pk for pk, state in self.snapshots.items()
                                   if state.content != rows[pk].content)
        linked = {s.context_memory_id for s in self.snapshots.values() if s.context_memory_id}
        if linked:
            texts = dict(sealing.texts(Memory.objects.filter(pk__in=linked)))
            self.contexts = {pk: texts.get(s.context_memory_id, "")
                             for pk, s in self.snapshots.items() if s.context_memory_id}

    def _of(self, source: sharing.Source) -> list[Memory]:
        return [s for s in self.snapshots.values() if s.namespace_id == source.namespace.pk]

    # --- the channels -------------------------------------------------------------------

    def vector_hits(self, source: sharing.Source, query_vector: np.ndarray, n: int,
                    excluded: Iterable[uuid.UUID] = ()) -> Hits:
        """Cosine similarity of the query to each snapshot of ``source`` (best first)."""
        skip = set(excluded)
        mine = [s.pk for s in self._of(source) if s.pk not in skip]
        if not mine:
            return []
        vectors = self.vectors(mine)
        query = np.asarray(query_vector, dtype=np.float64)
        query = query / (np.linalg.norm(query) or 1.0)
        hits = []
        for pk in mine:
            vector = vectors.get(pk)
            if vector is not None:
                vector = np.asarray(vector, dtype=np.float64)
                hits.append((pk, float(query @ (vector / (np.linalg.norm(vector) or 1.0)))))
        return _ranked(hits)[:n]

    def keyword_hits(self, source: sharing.Source, query: lexical.LexicalQuery, n: int,
                     weight: float, excluded: Iterable[uuid.UUID] = ()) -> Hits:
        """Keyword scores of ``source``'s snapshots' text then (best first; only matches)."""
        key = (source.namespace.pk, query.engine_query)
        if key not in self._keywords:
            texts = [(s.pk, s.content, self.contexts.get(s.pk, "")) for s in self._of(source)]
            self._keywords[key] = _ranked(as_of_keywords.scores(source.namespace.pk, query, texts,
                                                                weight))
        skip = set(excluded)
        return [hit for hit in self._keywords[key] if hit[0] not in skip][:n]

    def vectors(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, np.ndarray]:
        """The snapshots' vectors: today's stored one where the content is unchanged, the
        content then (with its context) embedded again otherwise; computed once each."""
        wanted = [pk for pk in ids if pk in self.snapshots and pk not in self._vectors]
        stored = [pk for pk in wanted if pk not in self.rewritten]
        by_namespace: dict[int, list[uuid.UUID]] = {}
        for pk in stored:
            by_namespace.setdefault(self.snapshots[pk].namespace_id, []).append(pk)
        for group in by_namespace.values():
            try:
                found = get_vector_store().embeddings(self.snapshots[group[0]].namespace,
                                                      [str(pk) for pk in group])
            except Exception as exc:  # the text is known: embed it rather than fail
                log.warning("as-of recall: stored vectors unavailable (%s); embedding", exc)
                continue
            self._vectors.update({pk: found[str(pk)] for pk in group if str(pk) in found})
        # rewritten since the moment, not indexed yet (outbox pending), or unreadable
        embed = [pk for pk in wanted if pk not in self._vectors]
        if embed:
            vectors = context.mixed_texts([self.snapshots[pk].content for pk in embed],
                                          [self.contexts.get(pk) or None for pk in embed])
            self._vectors.update(zip(embed, vectors, strict=True))
        return {pk: self._vectors[pk] for pk in ids if pk in self._vectors}

    def describe(self) -> dict[str, Any]:
        """For explain: the moment and how many memories were shown as they were then."""
        return {"as_of": self.moment.isoformat().replace("+00:00", "Z"),
                "edited_since": len(self.excluded), "rebuilt": len(self.snapshots)}


def merge(hits: Hits, extra: Hits, n: int) -> Hits:
    """A channel's list with re-scored memories put in by score (ties: the channel's first)."""
    if not extra:
        return hits
    return sorted([*hits, *extra], key=lambda hit: -hit[1])[:n]


def _ranked(hits: Iterable[tuple[uuid.UUID, float]]) -> Hits:
    """Best first, ties by id (the keyword channel's ``ORDER BY score DESC, memory_id``)."""
    return sorted(hits, key=lambda hit: (-hit[1], hit[0].hex))


def matches(memory: Memory, filters: Mapping[str, Any]) -> bool:
    """The recall filters evaluated on a memory's fields in Python: the meaning
    ``channels._where`` gives them in Chroma and ``channels._filtered`` in SQL."""
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name) and getattr(memory, name) != filters[name]:
            return False
    tags = set(memory.tags or [])
    if any(tag not in tags for tag in filters.get("tags") or []):
        return False
    if filters.get("tags_any") and not tags & set(filters["tags_any"]):
        return False
    checks = (("created_after", memory.created_at, False), ("created_before", memory.created_at, True),
              ("occurred_after", memory.event_time, False), ("occurred_before", memory.event_time, True))
    for name, value, before in checks:
        bound = filters.get(name)
        if bound and (value >= bound if before else value < bound):
            return False
    metadata = memory.metadata if isinstance(memory.metadata, dict) else {}
    return all(key in metadata and _same(metadata[key], value)
               for key, value in (filters.get("metadata") or {}).items())


def _same(stored: Any, wanted: Any) -> bool:
    """A metadata filter's equality: booleans equal booleans only, numbers by value."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, (int, float)) and isinstance(wanted, (int, float)):
        return stored == wanted
    return type(stored) is type(wanted) and stored == wanted
