"""The ``memory_links`` store of the registry (apps/memories/stores.py): consolidation's
lineage rows by id, what an erasure changes in them, and what is left of erased ids; and
the ``merged_survivors`` store: what erased members gave the survivors they were merged
into (tags, a merged text), taken back by the erasure (apps/memories/merge_marks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models

from apps.memories.stores import Erased, ErasedBy, Store, chunks
from apps.tenancy.models import Namespace


def count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
    """Links of the namespace, or those naming one of ``ids`` at either end."""
    from apps.memories.models import MemoryLink

    links = MemoryLink.objects.filter(namespace=namespace)
    if ids is None:
        return links.count()
    return sum(links.filter(models.Q(source_id__in=part) | models.Q(target_id__in=part)).count()
               for part in chunks(ids))


def touched(namespace: Namespace, ids: Sequence[Any]) -> list[dict[str, str]]:
    """What erasing ``ids`` changes in the lineage of the memories kept: a memory merged
    into an erased one is current again (``released``); a kept survivor loses the erased
    members it was derived from (``lineage_removed``). Ids only."""
    from apps.memories.models import Memory, MemoryLink

    erased = {str(i) for i in ids}
    found: dict[str, str] = {}
    for part in chunks(list(erased)):
        for pk in Memory.objects.in_namespace_checked(namespace).filter(
                superseded_by__in=part).order_by().values_list("pk", flat=True):
            if str(pk) not in erased:
                found[str(pk)] = "released"
        for source in MemoryLink.objects.filter(namespace=namespace, target_id__in=part,
                                                relation=MemoryLink.Relation.DERIVED_FROM
                                                ).values_list("source_id", flat=True):
            if str(source) not in erased:
                found.setdefault(str(source), "lineage_removed")
    return [{"memory": pk, "change": change} for pk, change in sorted(found.items())]


def remaining(namespace: Namespace | None, erased: Erased) -> int | None:
    if namespace is None:
        return None  # its rows went with the namespace
    return count(namespace, erased.ids)


def stores() -> tuple[Store, ...]:
    """The registry's entries (registered with memories' own row stores)."""
    return store(), survivors_store()


def store() -> Store:
    """The registry's entry (registered with memories' own row stores)."""
    from apps.memories.models import MemoryLink

    return Store("memory_links", "consolidation lineage",
                 "memories_memorylink: which memory another was merged into (derived_from), "
                 "which two memories conflict (conflicts_with) and which a person kept "
                 "apart (kept_apart), by id (apps/lifecycle).",
                 ErasedBy.CASCADE, models=(MemoryLink,), count=count, remaining=remaining,
                 touched=touched)


def survivors_store() -> Store:
    """What a kept survivor took from its erased members: erased before the delete (the
    members are still there to read), checked by the digests of its erasure versions."""
    from apps.memories import merge_marks

    return Store("merged_survivors", "what merged members gave the memories kept",
                 "A kept survivor's tags gained at a merge only from an erased member, those "
                 "tags in its merge versions, and a text given at a merge from an erased "
                 "member: taken back by a versioned edit marked by erasure (apps/lifecycle).",
                 ErasedBy.ERASURE, erase=merge_marks.erase, remaining=merge_marks.remaining,
                 touched=merge_marks.touched)
