"""Export: everything held about a namespace or a subject, as streamed JSON lines.

Lines, in order: every selected memory with its versions (``"type": "memory"``; its
consolidation lineage: ``superseded_at``, ``derived_from`` and ``conflicts_with``; and
``external_ids`` when it was imported from another system), the
sharing grants that expose any of them (``"grant"``), the rows other registered stores hold
about them (typed with the store's name, e.g. ``"gateway_facts"``: apps/memories/stores.py
``Store.export``), the audit entries about them
(``"audit"``), then one ``"manifest"`` line with the selector, counts per type and the
SHA-256 of every byte before it, so a recipient can check the file is whole. Memories
are read in keyset-ordered chunks and written as they are read: memory use does not
grow with the export (bench/export_memory.py measures it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.log import record as audit
from apps.audit.models import AuditEntry, AuditRecord
from apps.memories import stores
from apps.memories.external_ids import external_ids_of
from apps.memories.models import Memory, MemoryLink, MemoryVersion
from apps.memories.representation import iso_datetime, memory_row
from apps.privacy import ledger
from apps.privacy.selectors import Selector
from apps.tenancy.models import SharingGrant
from apps.tenancy.principal import Principal

CHUNK = 500
FORMAT = "memoryweb-export/1"


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
            ).encode()


def start(principal: Principal, selector: Selector, *,
          context: Mapping[str, Any] | None = None) -> Iterator[bytes]:
    """Audit the export (in its own transaction, before the first byte), then return
    the stream of chunks (each several lines).

    The entry holds the selector and how many memories it selected when the export
    began (``memories``), whichever door asked (REST, dashboard, manage.py). ``context``
    adds to it, e.g. the dashboard's ``{"erasure_request": id}`` for an export made from
    an erasure request, so the request's story lists it."""
    summary = {**ledger.for_audit(selector.namespace, selector.describe()),
               "memories": selector.memories().count(),
               **(context or {})}
    with transaction.atomic():
        audit(principal, "export", namespace=selector.namespace, summary=summary)
    return _stream(principal, selector)


def _stream(principal: Principal, selector: Selector) -> Iterator[bytes]:
    digest = hashlib.sha256()
    counts = {"memory": 0, "version": 0, "grant": 0, "audit": 0}
    grants = list(SharingGrant.objects.filter(grantor=selector.namespace).select_related("grantee"))
    exposing: set[int] = set()
    seen_entries: set[int] = set()
    whole_namespace = selector.subject is None

    def emit(lines: list[bytes]) -> bytes:
        chunk = b"".join(lines)
        digest.update(chunk)
        return chunk

    for memories in _chunks(selector):
        versions = _versions_of(memories)
        other_ids = external_ids_of(memories)
        lineage = _lineage_of(selector.namespace.pk, memories)
        lines = []
        for memory in memories:
            row = {"type": "memory", **memory_row(memory),
                   "superseded_at": iso_datetime(memory.superseded_at),
                   **lineage.get(memory.pk, {"derived_from": [], "conflicts_with": []}),
                   "versions": versions.get(memory.pk, [])}
            if memory.pk in other_ids:  # its ids in the systems it was imported from
                row["external_ids"] = other_ids[memory.pk]
            counts["version"] += len(row["versions"])
            lines.append(_line(row))
            exposing.update(g.pk for g in grants if g.covers(memory))
        counts["memory"] += len(memories)
        if not whole_namespace:  # this namespace's entries about these memories, each once
            entries = _entries_naming(selector.namespace.pk, [str(m.pk) for m in memories],
                                      seen_entries)
            counts["audit"] += len(entries)
            lines += [_line({"type": "audit", **entry}) for entry in entries]
        yield emit(lines)
    lines = [_line({"type": "grant", **_grant_row(g)}) for g in grants if g.pk in exposing]
    counts["grant"] = len(lines)
    if lines:
        yield emit(lines)
    for store in stores.stores():
        if store.export is None:
            continue
        lines = []
        for row in store.export(selector.namespace, None if whole_namespace else selector):
            lines.append(_line({"type": store.name, **row}))
            counts[store.name] = counts.get(store.name, 0) + 1  # listed when it held some
            if len(lines) >= CHUNK:
                yield emit(lines)
                lines = []
        if lines:
            yield emit(lines)
    if whole_namespace:
        for entries in _namespace_entries(selector.namespace.pk):
            counts["audit"] += len(entries)
            yield emit([_line({"type": "audit", **entry}) for entry in entries])
    yield _line({"type": "manifest", "format": FORMAT, "selector": selector.describe(),
                 "exported_at": timezone.now().isoformat(), "exported_by": principal.label,
                 "counts": counts, "sha256": digest.hexdigest()})


def _chunks(selector: Selector) -> Iterator[list[Memory]]:
    """The selected memories, oldest first, CHUNK at a time (keyset: no OFFSET scans)."""
    queryset = selector.memories().select_related("namespace").order_by("created_at", "id")
    last = None
    while True:
        page = queryset
        if last is not None:
            page = page.filter(created_at__gte=last.created_at).exclude(
                created_at=last.created_at, id__lte=last.id)
        batch = list(page[:CHUNK])
        if not batch:
            return
        yield batch
        last = batch[-1]


def _versions_of(memories: list[Memory]) -> dict[Any, list[dict[str, Any]]]:
    found: dict[Any, list[dict[str, Any]]] = {}
    for version in MemoryVersion.objects.filter(memory__in=memories).order_by("memory", "version"):
        found.setdefault(version.memory_id, []).append({
            "version": version.version, "changed_by": version.changed_by,
            "changed_at": version.changed_at.isoformat(), "changes": version.changes})
    return found


def _lineage_of(namespace_id: int, memories: list[Memory]) -> dict[Any, dict[str, list[Any]]]:
    """Each memory's consolidation links, two queries per chunk: ``derived_from`` (the
    memories merged into it, with their similarity to it) and ``conflicts_with`` (stored
    once, listed on both ends: the other's id, what differs, the similarity), each list in
    id order so an export -> import -> export gives the same lines. The ids name memories
    of the namespace, exported or not (a subject export names ones it leaves out)."""
    ids = [m.pk for m in memories]
    found: dict[Any, dict[str, list[Any]]] = {}

    def add(memory: Any, kind: str, item: dict[str, Any]) -> None:
        found.setdefault(memory, {"derived_from": [], "conflicts_with": []}).setdefault(
            kind, []).append(item)

    links = MemoryLink.objects.filter(namespace_id=namespace_id)
    columns = ("source_id", "target_id", "relation", "similarity", "differs_in")
    outgoing = links.filter(source_id__in=ids).values_list(*columns)
    incoming = links.filter(target_id__in=ids, relation__in=[
        MemoryLink.Relation.CONFLICTS_WITH, MemoryLink.Relation.KEPT_APART]).values_list(*columns)
    for source, target, relation, similarity, differs_in in outgoing:
        if relation == MemoryLink.Relation.DERIVED_FROM:
            add(source, "derived_from", {"id": str(target), "similarity": similarity})
        elif relation == MemoryLink.Relation.CONFLICTS_WITH:
            add(source, "conflicts_with", {"id": str(target), "differs_in": list(differs_in or []),
                                           "similarity": similarity})
        elif relation == MemoryLink.Relation.KEPT_APART:
            add(source, "kept_apart", {"id": str(target)})
    for source, target, relation, similarity, differs_in in incoming:
        if relation == MemoryLink.Relation.KEPT_APART:
            add(target, "kept_apart", {"id": str(source)})
        else:
            add(target, "conflicts_with", {"id": str(source), "differs_in": list(differs_in or []),
                                           "similarity": similarity})
    for lists in found.values():
        for items in lists.values():
            items.sort(key=lambda item: item["id"])
    return found


def _entry_row(entry: AuditEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "created_at": entry.created_at.isoformat(), "actor": entry.actor,
            "agent_id": entry.agent_id, "namespace": entry.namespace,
            "operation": entry.operation, "record_ids": entry.record_ids,
            "summary": entry.summary, "request_id": entry.request_id,
            "prev_hash": entry.prev_hash, "entry_hash": entry.entry_hash}


def _entries_naming(namespace_id: int, ids: list[str], seen: set[int]) -> list[dict[str, Any]]:
    """The namespace's own entries naming these ids. Another namespace's entries may name
    them too (a grantee's audited recall of a shared memory): those are the other
    tenant's records, never exported here."""
    seqs = set(AuditRecord.objects.filter(record_id__in=ids, entry__namespace_id=namespace_id)
               .values_list("entry_id", flat=True))
    fresh = sorted(seqs - seen)
    seen.update(fresh)
    return [_entry_row(e) for e in AuditEntry.objects.filter(
        seq__in=fresh, namespace_id=namespace_id).order_by("seq")]


def _namespace_entries(namespace_id: int) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while True:
        batch = list(AuditEntry.objects.filter(namespace_id=namespace_id, seq__gt=after)
                     .order_by("seq")[:CHUNK])
        if not batch:
            return
        yield [_entry_row(e) for e in batch]
        after = batch[-1].seq


def _grant_row(grant: SharingGrant) -> dict[str, Any]:
    moments = ("created_after", "created_before", "expires_at", "revoked_at", "created_at")
    return {"id": grant.pk, "grantee": grant.grantee.slug, "tags": grant.tags,
            "kinds": grant.kinds, "status": grant.status,
            **{name: getattr(grant, name).isoformat() if getattr(grant, name) else None
               for name in moments}}
