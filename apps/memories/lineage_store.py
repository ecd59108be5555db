"""The ``memory_links`` store of the registry (apps/memories/stores.py): consolidation's
lineage rows by id, what an erasure changes in them, and what is left of erased ids."""

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
        for pk in Memory.objects.filter(namespace=namespace, superseded_by__in=part).values_list(
                "pk", flat=True):
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


def store() -> Store:
    """The registry's entry (registered with memories' own row stores)."""
    from apps.memories.models import MemoryLink

    return Store("memory_links", "consolidation lineage",
                 "memories_memorylink: which memory another was merged into (derived_from) "
                 "and which two memories conflict (conflicts_with), by id (apps/lifecycle).",
                 ErasedBy.CASCADE, models=(MemoryLink,), count=count, remaining=remaining,
                 touched=touched)
