"""Import: memories from another store, with their provenance kept (the service side).

The importers (``apps.compat.formats``) read a file into :class:`ImportRecord` objects;
this module validates and writes them. Unlike ``ingest`` it keeps what the source says
about each memory (its agent, when it was stored and edited, its version history,
how often it was recalled), because an import moves memories, it does not author them.
That is why it takes a team admin (``manage``), not an agent.

Idempotent: a record names its id in the source system (an :class:`ExternalId`), and
a record already imported into the namespace is skipped, so a re-run creates nothing.
Links between memories (near-duplicates, consolidation lineage) are restored once every
record is in (apps/memories/import_lineage.py).
Each batch is one transaction of the write path (apps/memories/writes.py: memories, tag
rows, keyword index, versions, external ids, outbox, one audit entry), indexed in Chroma
after the commit like any write. A bad
record is reported with its line and skipped; the rest go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError
from django.utils import timezone
from rest_framework import serializers

from apps.audit.log import record as audit
from apps.core.errors import InvalidInput
from apps.core.roles import Action
from apps.memories import import_lineage, indexing, schemas, writes
from apps.memories.external_ids import raise_sequence
from apps.memories.models import (
    EventType,
    ExternalId,
    Memory,
    MemoryKind,
    MemoryVersion,
    content_hash,
)
from apps.memories.services import check_writable
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import authorize, resolve_namespace

LIMITS = schemas.LIMITS
BATCH = 200


#: What an imported version's ``system:`` author becomes: this server's own jobs write
#: under ``system:`` (an erasure's edits of a survivor are ``system:erasure``, which its
#: check reads, apps/memories/merge_marks.py), and no file speaks for them here. An export
#: carries such versions (apps/privacy/export.py writes every version as it is), so they
#: are relabelled, not refused: a round trip keeps the history, as the source's.
IMPORTED_SYSTEM = "import:"


class VersionInput(schemas.StrictSerializer):
    version = serializers.IntegerField(min_value=2)
    changed_by = schemas.TextField(max_length=160)
    changed_at = schemas.UTCDateTimeField()
    changes = serializers.DictField()

    def validate_changed_by(self, value: str) -> str:
        return (IMPORTED_SYSTEM + value)[:160] if value.startswith("system:") else value


class ImportInput(schemas.MemoryInput):
    """A memory as a source holds it: MemoryInput plus the provenance ingest never takes
    from a body (the import is a team admin's act, audited as such)."""

    #: A source's expired memory is still held there: imported as it is, erased by retention.
    allow_past_expiry = True
    namespace = None
    agent_id = schemas.TextField(max_length=LIMITS["max_id_length"], allow_blank=True, default="")
    created_at = schemas.UTCDateTimeField(required=False)
    updated_at = schemas.UTCDateTimeField(required=False)
    last_recalled_at = schemas.UTCDateTimeField(required=False, allow_null=True, default=None)
    access_count = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1, default=1)
    versions = VersionInput(many=True, required=False, default=list)
    #: A conversation event (an export's, with its ``event`` id in ``external_ids``) stays
    #: one: kind ``event`` and its type go together.
    event_type = serializers.ChoiceField(choices=EventType.choices, required=False,
                                         allow_blank=True, default="")
    role = schemas.TextField(max_length=32, required=False, allow_blank=True, default="")
    #: Every kind, "event" included (ingest's list leaves it out).
    kind = serializers.ChoiceField(choices=MemoryKind.choices, default=MemoryKind.FACT)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if (attrs["kind"] == MemoryKind.EVENT) != bool(attrs["event_type"]):
            raise serializers.ValidationError(
                {"event_type": "an event has kind 'event' and an event_type; other memories "
                 "neither."})
        numbers = [v["version"] for v in attrs["versions"]]
        if len(set(numbers)) != len(numbers) or any(n > attrs["version"] for n in numbers):
            raise serializers.ValidationError(
                {"versions": "version numbers must be distinct and at most the memory's version."})
        return attrs


@dataclass
class ImportRecord:
    """One memory read from a source file, before validation."""

    line: int
    #: Its id in the source system: how a re-run recognises it.
    system: str
    external_id: str
    data: dict[str, Any]
    #: Keep this id when it is free (MemoryWeb's own export: a round trip keeps ids).
    preferred_id: uuid.UUID | None = None
    #: The source's near-duplicate link, as an id of the same source (linked at the end).
    near_duplicate_of: str | None = None
    #: The memory a consolidation merged it into, as an id of the same source (restored
    #: at the end, like the near-duplicate link: superseded again, derived_from linked).
    superseded_by: str | None = None
    #: Its consolidation lineage as the file has it, checked with the record
    #: (import_lineage.check): since when it was superseded (ISO 8601); the memories
    #: merged into it (``[{"id", "similarity"}]``: the similarity its restored
    #: derived_from link gets); the memories it conflicts with (``[{"id", "differs_in",
    #: "similarity"}]``, linked again when both ends are in).
    superseded_at: Any = None
    derived_from: Any = None
    conflicts_with: Any = None
    #: The memories a person kept apart from it (``[{"id"}]``), linked again when both
    #: ends are in.
    kept_apart: Any = None
    #: Ids the memory had in other systems (an export carries them), restored as well.
    other_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    created: int = 0
    existing: int = 0
    #: (line, message): records skipped, and problems with the file itself.
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: (line, message): imported, with something left out (said why).
    warnings: list[tuple[int, str]] = field(default_factory=list)
    linked: int = 0
    #: Supersedes and conflict links restored (a source's consolidation lineage).
    superseded: int = 0
    conflicts: int = 0
    #: Kept-apart links restored (a person's rejected merges).
    kept_apart: int = 0
    #: Each record's source id seen in this run -> its line (a file naming one twice).
    seen: dict[tuple[str, str], int] = field(default_factory=dict)


def import_records(principal: Principal, namespace: str, records: Iterable[ImportRecord | tuple],
                   *, progress: Callable[[int], None] | None = None,
                   batch_size: int = BATCH) -> ImportReport:
    """Import ``records`` into ``namespace`` (team admin). ``records`` may also yield
    ``(line, message)`` tuples: a reader's own parse errors, reported as they come."""
    ns = resolve_namespace(principal, namespace)
    authorize(principal, ns.pk, Action.MANAGE)
    check_writable(ns)
    report = ImportReport()
    links = import_lineage.Pending()
    for chunk in _chunks(records, batch_size):
        good: list[ImportRecord] = []
        for item in chunk:
            if isinstance(item, tuple):
                report.errors.append(item)
            else:
                good.append(item)
        if good:
            _import_batch(principal, ns, good, report, links)
        if progress:
            progress(len(chunk))
    import_lineage.restore(principal, ns, links, report)
    return report


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Known:
    """What the namespace already holds of a batch's identities."""

    #: (system, id) -> (memory id, imported?)
    external: dict[tuple[str, str], tuple[uuid.UUID, bool]]
    #: memory id -> namespace id, for the MemoryWeb ids the batch names
    memories: dict[uuid.UUID, int]

    @classmethod
    def of(cls, ns: Namespace, records: list[ImportRecord]) -> _Known:
        keys = {(r.system, r.external_id) for r in records}
        keys |= {(system, str(value)) for r in records for system, value in r.other_ids.items()}
        external = {(system, value): (memory, imported) for system, value, memory, imported in
                    ExternalId.objects.filter(namespace=ns, external_id__in={k[1] for k in keys})
                    .values_list("system", "external_id", "memory_id", "imported")
                    if (system, value) in keys}
        named = {r.preferred_id for r in records if r.preferred_id}
        named |= {pk for r in records if (pk := _uuid_or_none(
            r.other_ids.get(ExternalId.System.MEMORYWEB, ""))) is not None}
        memories = dict(Memory.objects.filter(pk__in=named).values_list("pk", "namespace_id"))
        return cls(external, memories)

    def already_here(self, ns: Namespace, record: ImportRecord) -> bool:
        """Imported before: under its own source id, or (moved back) as the MemoryWeb
        memory it was copied from."""
        if self.external.get((record.system, record.external_id), (None, False))[1]:
            return True
        if record.preferred_id and self.memories.get(record.preferred_id) == ns.pk:
            return True
        origin = _uuid_or_none(record.other_ids.get(ExternalId.System.MEMORYWEB, ""))
        if origin and self.memories.get(origin) == ns.pk:
            return True
        return any(self.external.get((system, value), (None, False))[1]
                   for system, value in record.other_ids.items())


def _import_batch(principal: Principal, ns: Namespace, records: list[ImportRecord],
                  report: ImportReport, links: import_lineage.Pending) -> None:
    known = _Known.of(ns, records)
    memories: list[Memory] = []
    versions: list[MemoryVersion] = []
    external: list[ExternalId] = []
    #: Each memory's links, remembered once the batch is written (not when it lost a race).
    pending: list[tuple[ImportRecord, uuid.UUID, import_lineage.Lineage]] = []
    for record in records:
        key = (record.system, record.external_id)
        if key in report.seen:
            report.errors.append((record.line, f"{record.system} id {record.external_id} was "
                                  f"already read at line {report.seen[key]}; skipped."))
            continue
        report.seen[key] = record.line
        if known.already_here(ns, record):
            report.existing += 1
            continue
        if key in known.external:  # handed out here (a drop-in route) to another memory
            report.errors.append((record.line, f"{record.system} id {record.external_id} already "
                                  "names another memory of this namespace; skipped (import "
                                  "into a namespace that has not used it)."))
            continue
        if record.near_duplicate_of is not None and not isinstance(record.near_duplicate_of, str):
            report.errors.append((record.line, "near_duplicate_of: expected an id (text)."))
            continue
        try:
            cleaned = schemas.validate(ImportInput, record.data)
            lineage = import_lineage.check(record)
        except InvalidInput as exc:
            report.errors.append((record.line, f"{exc.field + ': ' if exc.field else ''}"
                                  f"{exc.message}"))
            continue
        pk = record.preferred_id if record.preferred_id and record.preferred_id not in \
            known.memories else uuid.uuid4()
        history = cleaned.pop("versions")
        cleaned.setdefault("created_at", timezone.now())
        cleaned.setdefault("updated_at", cleaned["created_at"])
        memory = Memory(id=pk, namespace=ns, content_hash=content_hash(cleaned["content"], ns),
                        **cleaned)
        memories.append(memory)
        versions += [MemoryVersion(memory=memory, **v) for v in history]
        ids = {}
        for system, value in record.other_ids.items():
            if (system, value) in known.external:
                report.warnings.append((record.line, f"imported without its {system} id {value}: "
                                        "it names another memory of this namespace."))
            else:
                ids[system] = value
        if pk != record.preferred_id:  # a kept id is its own mapping (the round trip adds none)
            ids.setdefault(record.system, record.external_id)  # the origin, if it had one, stays
        external += [ExternalId(namespace=ns, system=system, external_id=value, memory=memory,
                                imported=True) for system, value in ids.items()]
        pending.append((record, pk, lineage))
    if not memories:
        return
    embeddings = indexing.embed_contents([m.content for m in memories])
    numbered = [int(e.external_id) for e in external if e.system == ExternalId.System.CMM]

    def entry(stored: list[Memory]) -> None:
        audit(principal, "memory.import", namespace=ns, record_ids=[m.pk for m in stored],
              summary={"count": len(stored), "systems": sorted({e.system for e in external})})

    try:
        with writes.atomic() as write:  # the write path (apps/memories/writes.py) indexes on leaving
            if numbered:  # numbers handed out later start above the imported ones
                raise_sequence(ns, ExternalId.System.CMM, max(numbered))
            write.create(ns, memories, embeddings, actor=principal, audit=entry,
                         versions=versions, external_ids=external)
    except IntegrityError as exc:  # a concurrent import of the same records won the race
        first, last = records[0].line, records[-1].line
        report.errors.append((first, f"lines {first}-{last} not imported: another import wrote "
                              f"some of them meanwhile ({exc}); run again to add the rest."))
        return
    report.created += len(memories)
    for record, pk, lineage in pending:
        links.add(record, pk, lineage)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
