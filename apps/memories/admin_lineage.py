"""The memory page's lineage block (issue 21, item 6): what a memory was merged into, what
was merged into it, the memories it conflicts with, and those a person kept apart from it.

Read-only, from the rows consolidation writes (apps/lifecycle): ``Memory.superseded_by``
and ``MemoryLink`` (``derived_from``: survivor -> merged memory, with its similarity;
``conflicts_with``: stored once, either direction). A fixed number of queries whatever the
lineage's size: the links (with both ends), the memories merged into this one, and the
survivor when no link names it. The unmerge behind the block's buttons is the dashboard's
(apps/dashboard/consolidation_views.py), reached by URL name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q

from apps.memories.models import Memory, MemoryLink

#: Links, and memories merged into one memory, read at most (a survivor holds up to 20
#: per merge; conflicts are rarer still).
MAX_ROWS = 200


@dataclass
class Lineage:
    merged_into: Memory | None = None
    merged_into_similarity: float | None = None
    merged_at: dt.datetime | None = None
    #: (memory, its similarity to this one) merged into this one, oldest merge first.
    merged: list[tuple[Memory, float | None]] = field(default_factory=list)
    #: (the other memory, what differs, similarity).
    conflicts: list[tuple[Memory, list[str], float | None]] = field(default_factory=list)
    #: The memories a person kept apart from this one (never merged with it).
    kept_apart: list[Memory] = field(default_factory=list)
    more: bool = False

    @property
    def count(self) -> int:
        return (int(self.merged_into is not None) + len(self.merged) + len(self.conflicts)
                + len(self.kept_apart))


def lineage(memory: Memory) -> Lineage | None:
    """The memory's lineage, or None when it has none (no tab, no block)."""
    links = list(MemoryLink.objects.filter(Q(source=memory.pk) | Q(target=memory.pk),
                                           namespace_id=memory.namespace_id)
                 .select_related("source", "target").order_by("created_at", "pk")[:MAX_ROWS])
    merged = list(Memory.objects.filter(superseded_by=memory.pk, namespace_id=memory.namespace_id)
                  .order_by("superseded_at", "created_at", "pk")[:MAX_ROWS + 1])
    found = Lineage(more=len(merged) > MAX_ROWS or len(links) == MAX_ROWS)
    derived = {link.target_id: link.similarity for link in links
               if link.relation == MemoryLink.Relation.DERIVED_FROM and link.source_id == memory.pk}
    found.merged = [(m, derived.get(m.pk)) for m in merged[:MAX_ROWS]]
    if memory.superseded_by_id is not None:
        link = next((link for link in links if link.relation == MemoryLink.Relation.DERIVED_FROM
                     and link.target_id == memory.pk
                     and link.source_id == memory.superseded_by_id), None)
        found.merged_into = link.source if link else Memory.objects.filter(
            pk=memory.superseded_by_id).first()
        found.merged_into_similarity = link.similarity if link else None
        found.merged_at = memory.superseded_at
    found.conflicts = [
        (link.target if link.source_id == memory.pk else link.source, list(link.differs_in or []),
         link.similarity)
        for link in links if link.relation == MemoryLink.Relation.CONFLICTS_WITH]
    found.kept_apart = [link.target if link.source_id == memory.pk else link.source
                        for link in links if link.relation == MemoryLink.Relation.KEPT_APART]
    return found if found.count else None
