"""Other systems' ids for memories: lookups, and the numbers seed 000's clients use.

A number is taken from :class:`ExternalIdSequence` with an UPDATE ... last = last + n
before it is read back, inside the transaction that writes the rows: the UPDATE locks
the sequence row (PostgreSQL) or the database (SQLite), so concurrent requests queue
there instead of taking the same number, and a number is never handed out twice, even
after its memory is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from apps.core.errors import Unavailable
from apps.memories.models import ExternalId, ExternalIdSequence, Memory
from apps.tenancy.models import Namespace

#: Seed 000's numbers are kept within what every JSON client reads exactly (2**53).
MAX_NUMBER = 2**53


def external_ids_of(memories: Iterable[Memory]) -> dict[uuid.UUID, dict[str, str]]:
    """Each memory's ids in other systems (the export writes them beside the memory)."""
    found: dict[uuid.UUID, dict[str, str]] = {}
    for memory_id, system, value in ExternalId.objects.filter(
            memory__in=[m.pk for m in memories]).values_list("memory_id", "system", "external_id"):
        found.setdefault(memory_id, {})[system] = value
    return found


def raise_sequence(namespace: Namespace, system: str, at_least: int) -> None:
    """Make sure numbers handed out later are above ``at_least`` (an import brought it)."""
    sequence, _ = ExternalIdSequence.objects.get_or_create(namespace=namespace, system=system)
    ExternalIdSequence.objects.filter(pk=sequence.pk).update(last=Greatest(F("last"), at_least))


def _take(namespace: Namespace, system: str, count: int) -> int:
    """Reserve ``count`` numbers (call inside a transaction); returns the first."""
    sequence, _ = ExternalIdSequence.objects.get_or_create(namespace=namespace, system=system)
    ExternalIdSequence.objects.filter(pk=sequence.pk).update(last=F("last") + count)
    last = ExternalIdSequence.objects.values_list("last", flat=True).get(pk=sequence.pk)
    return last - count + 1


def numbers(namespace: Namespace, system: str, memory_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each memory's number in ``system``, numbering those that have none (next free)."""
    wanted = list(dict.fromkeys(memory_ids))
    for _ in range(3):  # another request numbered some of them meanwhile: read again
        have = dict(ExternalId.objects.filter(namespace=namespace, system=system,
                                              memory_id__in=wanted)
                    .values_list("memory_id", "external_id"))
        missing = [pk for pk in wanted if pk not in have]
        if not missing:
            return {pk: int(value) for pk, value in have.items()}
        try:
            with transaction.atomic():
                first = _take(namespace, system, len(missing))
                ExternalId.objects.bulk_create([
                    ExternalId(namespace=namespace, system=system, external_id=str(first + i),
                               memory_id=pk) for i, pk in enumerate(missing)])
        except IntegrityError:
            continue
    raise Unavailable("could not number the memories under concurrent requests; retry.")
