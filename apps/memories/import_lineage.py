"""An import's links between memories: checked with each record, restored once every
record is in (a link may point forward in the file, or at a memory already there).

A MemoryWeb export names, on each memory, the memory it nearly duplicates
(``near_duplicate_of``) and its consolidation lineage (docs/lifecycle.md): the memory it
was merged into and since when (``superseded_by``, ``superseded_at``), the memories merged
into it with their similarity (``derived_from``), and the memories it conflicts with
(``conflicts_with``: what differs, the similarity). All of them name memories by their id
in the source; the import maps each to the receiving namespace's memory (the same id when
it was kept, else the copy whose ``external_ids`` hold it) and restores the link through
the write path (``Write.supersede`` with the source's time and similarity,
``Write.link_conflicts``) where both ends are in the namespace after the import. A link
whose other end is not (a subject export names memories it leaves out) is left out: the
memory is then current, or without that conflict.

Bad lineage fields make the record a problem of its line, skipped whole: nothing of it is
written, so no link is restored half.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput
from apps.core.validation import StrictSerializer, TextField, UTCDateTimeField, validate
from apps.memories import stores, writes
from apps.memories.models import ExternalId, Memory
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

if TYPE_CHECKING:
    from apps.memories.imports import ImportRecord, ImportReport


class SimilarityField(serializers.FloatField):
    """A link's similarity: a number from -1 to 1 (a cosine), never text or a boolean, so a
    round trip gives back the very number."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=-1.0, max_value=1.0, allow_null=True, required=False,
                         default=None, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, (bool, str)):
            self.fail("invalid")
        return super().to_internal_value(data)


class DerivedInput(StrictSerializer):
    """A memory merged into this one."""

    id = serializers.UUIDField()
    similarity = SimilarityField()


class ConflictInput(DerivedInput):
    """A memory this one conflicts with, and what differs (facet names: number, name,
    date, negation)."""

    differs_in = serializers.ListField(child=TextField(max_length=32), max_length=16,
                                       required=False, default=list)


class KeptApartInput(StrictSerializer):
    """A memory a person kept apart from this one (consolidation never merges the two)."""

    id = serializers.UUIDField()


class LineageInput(StrictSerializer):
    superseded_at = UTCDateTimeField(required=False, allow_null=True, default=None)
    derived_from = DerivedInput(many=True, required=False, default=list)
    conflicts_with = ConflictInput(many=True, required=False, default=list)
    kept_apart = KeptApartInput(many=True, required=False, default=list)


@dataclass
class Lineage:
    """A record's checked lineage fields (ids as the source's text)."""

    superseded_at: datetime | None
    #: member id -> its similarity to this memory
    derived_from: dict[str, float | None]
    #: (other id, similarity, differs_in)
    conflicts_with: list[tuple[str, float | None, list[str]]]
    #: other ids
    kept_apart: list[str] = field(default_factory=list)


def check(record: ImportRecord) -> Lineage:
    """The record's lineage fields, checked (``InvalidInput`` naming the field). A field
    missing or null is empty: an export written before they existed imports as before."""
    names = ("superseded_at", "derived_from", "conflicts_with", "kept_apart")
    data = {name: value for name in names if (value := getattr(record, name)) is not None}
    if not data or data == {"derived_from": [], "conflicts_with": []}:  # most records
        return Lineage(None, {}, [])
    cleaned = validate(LineageInput, data)
    if cleaned["superseded_at"] is not None and not record.superseded_by:
        raise InvalidInput("only a superseded memory (with superseded_by) has one.",
                           field="superseded_at")
    for name in ("derived_from", "conflicts_with", "kept_apart"):
        ids = [item["id"] for item in cleaned[name]]
        if record.preferred_id is not None and record.preferred_id in ids:
            raise InvalidInput("the memory itself is named (a memory is never merged into "
                               "itself nor in conflict with itself).", field=name)
        twice = next((pk for n, pk in enumerate(ids) if pk in ids[:n]), None)
        if twice is not None:
            raise InvalidInput(f"{twice} is named twice.", field=name)
    return Lineage(
        cleaned["superseded_at"],
        {str(item["id"]): item["similarity"] for item in cleaned["derived_from"]},
        [(str(item["id"]), item["similarity"], list(item["differs_in"]))
         for item in cleaned["conflicts_with"]],
        [str(item["id"]) for item in cleaned["kept_apart"]])


@dataclass
class _Supersede:
    line: int
    memory: uuid.UUID
    #: The member's and its survivor's ids in the source.
    source_id: str
    by: str
    at: datetime | None


@dataclass
class Pending:
    """The links of the records imported so far, to restore at the end (ids of the
    source system each record came from)."""

    #: (line, memory, system, target id)
    near_duplicates: list[tuple[int, uuid.UUID, str, str]] = field(default_factory=list)
    supersedes: dict[str, list[_Supersede]] = field(default_factory=lambda: defaultdict(list))
    #: (system, survivor id) -> member id -> similarity (the survivor's derived_from)
    similarities: dict[tuple[str, str], dict[str, float | None]] = field(default_factory=dict)
    #: system -> (line, memory, other id, similarity, differs_in)
    conflicts: dict[str, list[tuple[int, uuid.UUID, str, float | None, list[str]]]] = field(
        default_factory=lambda: defaultdict(list))
    #: system -> (memory, other id): kept-apart links
    apart: dict[str, list[tuple[uuid.UUID, str]]] = field(
        default_factory=lambda: defaultdict(list))

    def add(self, record: ImportRecord, memory: uuid.UUID, lineage: Lineage) -> None:
        """Remember a record's links (its memory is written in this batch)."""
        system = record.system
        if record.near_duplicate_of:
            self.near_duplicates.append((record.line, memory, system, record.near_duplicate_of))
        if record.superseded_by:
            self.supersedes[system].append(_Supersede(
                record.line, memory, record.external_id, _canonical(record.superseded_by),
                lineage.superseded_at))
        if lineage.derived_from:
            self.similarities[(system, record.external_id)] = lineage.derived_from
        for other, similarity, differs_in in lineage.conflicts_with:
            self.conflicts[system].append((record.line, memory, other, similarity, differs_in))
        self.apart[system].extend((memory, other) for other in lineage.kept_apart)


def restore(principal: Principal, ns: Namespace, pending: Pending, report: ImportReport) -> None:
    """Restore the links once every record is in: near-duplicate links (audited as
    before), then, in one transaction, the supersedes (their source's ``superseded_at``
    and similarity) and the conflict links, with one ``memory.import`` entry counting
    them (``superseded_restored``, ``conflicts_restored``)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for _, _, system, target in pending.near_duplicates:
        wanted[system].add(_canonical(target))
    for system, items in pending.supersedes.items():
        wanted[system].update(item.by for item in items)
    for system, conflicts in pending.conflicts.items():
        wanted[system].update(other for _, _, other, _, _ in conflicts)
    for system, apart in pending.apart.items():
        wanted[system].update(other for _, other in apart)
    found = {system: _resolve(ns, system, names) for system, names in wanted.items()}

    with transaction.atomic():  # the links and their audit entry together
        linked = [pk for _, pk, system, target in pending.near_duplicates
                  if (to := found[system].get(_canonical(target))) is not None and to != pk
                  and writes.link_near_duplicate(pk, to)]
        if linked:
            audit(principal, "memory.import", namespace=ns, record_ids=linked,
                  summary={"near_duplicates_linked": len(linked)})
    report.linked = len(linked)

    groups = _supersede_groups(pending, found, report)
    pairs: dict[frozenset[uuid.UUID], tuple[uuid.UUID, uuid.UUID, float | None, list[str]]] = {}
    for system, conflicts in pending.conflicts.items():
        for _, pk, other, similarity, differs_in in conflicts:
            to = found[system].get(other)
            if to is not None and to != pk:
                pairs.setdefault(frozenset((pk, to)), (pk, to, similarity, differs_in))
    apart = {frozenset((pk, to)): (pk, to) for system, items in pending.apart.items()
             for pk, other in items if (to := found[system].get(other)) is not None and to != pk}
    if not groups and not pairs and not apart:
        return
    with writes.atomic() as write:
        for (by, at), members in groups.items():
            report.superseded += write.supersede(
                ns, [Memory(pk=pk, namespace=ns) for pk, _ in members],
                Memory(pk=by, namespace=ns), similarity=dict(members), at=at, actor=principal)
        if pairs:
            report.conflicts = write.link_conflicts(ns, list(pairs.values()), actor=principal)
        kept = report.kept_apart = (write.keep_apart(ns, list(apart.values()), actor=principal)
                                    if apart else 0)
        if report.superseded or report.conflicts or kept:
            named = {pk for members in groups.values() for pk, _ in members}
            named |= {pk for pair in [*pairs, *apart] for pk in pair}
            audit(principal, "memory.import", namespace=ns, record_ids=sorted(named, key=str),
                  summary={"superseded_restored": report.superseded,
                           "conflicts_restored": report.conflicts,
                           **({"kept_apart_restored": kept} if kept else {})})


def _supersede_groups(pending: Pending, found: dict[str, dict[str, uuid.UUID]],
                      report: ImportReport
                      ) -> dict[tuple[uuid.UUID, datetime | None], list[tuple[uuid.UUID, Any]]]:
    """The supersedes to restore, by survivor and time (one consolidation group each):
    member -> similarity. Those whose survivor is not in the namespace are left out, and
    so are those of a cycle (a hand-made file: consolidation supersedes only by a current
    memory), each warned."""
    edges: dict[uuid.UUID, tuple[uuid.UUID, _Supersede, float | None]] = {}
    for system, items in pending.supersedes.items():
        for item in items:
            by = found[system].get(item.by)
            if by is not None and by != item.memory:
                similarity = pending.similarities.get((system, item.by), {}).get(item.source_id)
                edges[item.memory] = (by, item, similarity)
    cycle = _on_cycles({pk: by for pk, (by, _, _) in edges.items()})
    groups: dict[tuple[uuid.UUID, datetime | None], list[tuple[uuid.UUID, Any]]] = defaultdict(list)
    for pk, (by, item, similarity) in edges.items():
        if pk in cycle:
            report.warnings.append((item.line, f"not superseded by {item.by}: the file's "
                                    "superseded_by links make a cycle; imported current."))
        else:
            groups[(by, item.at)].append((pk, similarity))
    return groups


def _on_cycles(successor: dict[uuid.UUID, uuid.UUID]) -> set[uuid.UUID]:
    """The memories on a cycle of ``successor`` (member -> survivor), each path walked once."""
    done: set[uuid.UUID] = set()
    cycle: set[uuid.UUID] = set()
    for start in successor:
        path: dict[uuid.UUID, int] = {}
        at: uuid.UUID | None = start
        while at is not None and at not in done and at not in path:
            path[at] = len(path)
            at = successor.get(at)
        if at is not None and at in path:  # came back to this path: from there on, a cycle
            cycle.update(pk for pk, n in path.items() if n >= path[at])
        done.update(path)
    return cycle


def _resolve(ns: Namespace, system: str, names: Iterable[str]) -> dict[str, uuid.UUID]:
    """Source ids -> the namespace's memories: through the ids it imported (``ExternalId``),
    else, for MemoryWeb ids, the memory that kept its id. Chunked queries, not one a link."""
    names = sorted(names)
    found: dict[str, uuid.UUID] = {}
    for part in stores.chunks(names):
        found.update(ExternalId.objects.filter(namespace=ns, system=system, external_id__in=part)
                     .values_list("external_id", "memory_id"))
    if system == ExternalId.System.MEMORYWEB:
        kept = [pk for name in names if name not in found
                and (pk := _uuid_or_none(name)) is not None]
        for part in stores.chunks(kept):
            found.update((str(pk), pk) for pk in Memory.objects.in_namespace_checked(ns).filter(
                pk__in=part).order_by().values_list("pk", flat=True))
    return found


def _canonical(value: str) -> str:
    """A MemoryWeb id as the export writes it (lower case, hyphens); other text as is."""
    pk = _uuid_or_none(value)
    return str(pk) if pk is not None else value


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
