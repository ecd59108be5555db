"""Erasures outlive backups: the erasure ledger's entries, where a database stands in it,
and the replay that re-applies what a restored database does not include.

The ledger itself (a hash-chained file in the key store, outside the data directory) is
apps/core/erasure_ledger.py, below tenancy so a namespace deletion appends too. Here:

- :func:`record_erasure`: an executed erasure (or retention expiry) appends its entry in
  the certificate's transaction, before the commit (a failed append fails the execute:
  503, the request stays ``executing``, retry execute).
- :func:`position`: the last ledger entry a database includes. Each entry names the
  audit entry of its change (seq and hash): a database includes the entry if its audit
  log holds that very entry, or if a replay recorded it (``erasure.replay`` audit
  entries, one per replayed entry, in the database itself, so a copy or restore of an
  older database carries an older position).
- :func:`replay`: the entries after the position, re-applied through the write path and
  the store registry (the same erase steps as an erasure), each recorded.
- the system check ``memoryweb.E013``: the server refuses to start on a database behind
  the ledger (a data directory copied back by hand); ``manage.py replay_erasures`` fixes it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.checks.registry import registry
from django.db import connection, transaction

from apps.audit.log import record as audit
from apps.audit.models import AuditEntry
from apps.core import erasure_ledger, keystore
from apps.core.checks import TAG
from apps.core.roles import Role
from apps.memories import stores, writes
from apps.memories.models import Memory
from apps.memories.sealing import namespace_encrypted
from apps.privacy.selectors import SUBJECT_FIELDS
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

REPLAY_OPERATION = "erasure.replay"
REPLAYER = Principal(label="system:replay", agent_id="", role=Role.SYSTEM)
CHECK_ID = "memoryweb.E013"
RETENTION_LABEL = "system:retention"


def hashed_selector(selector: Mapping[str, Any]) -> dict[str, str]:
    """Each subject field of an erasure's selector as an HMAC under the key store's
    selector key: an email or name never reaches the ledger in clear."""
    return {name: keystore.keyed_hash(name, json.dumps(value, sort_keys=True))
            for name, value in selector.items() if name != "namespace"}


def for_audit(namespace: Any, described: Mapping[str, Any]) -> dict[str, Any]:
    """A selector as an audit entry's summary records it: as it is, or — in an encrypted
    namespace, whose selectors are sealed (docs/encryption.md) — its subject fields as the
    ledger's HMACs, so the audit log, a plain store, names nobody in clear."""
    if namespace is None or not namespace_encrypted(namespace.pk, namespace):
        return dict(described)
    return {**{name: value for name, value in described.items()
               if name not in SUBJECT_FIELDS}, **hashed_selector(
        {name: value for name, value in described.items() if name in SUBJECT_FIELDS})}


def record_erasure(request: Any, body: Mapping[str, Any], digest: str, entry: AuditEntry) -> None:
    """Append an executed erasure (called in the certificate's transaction)."""
    try:
        selector = hashed_selector(request.selector)
    except (OSError, keystore.KeystoreError) as exc:
        raise erasure_ledger.unavailable(exc) from exc
    erasure_ledger.append(
        "retention" if request.requested_by == RETENTION_LABEL else "erasure", {
            "namespace": dict(body["namespace"]),
            "memories": [item["id"] for item in request.erased],
            "touched": body.get("touched") or {},
            "selector": selector,
            # An erasure by agent or session took the rows about it made up to then.
            **({"through": body["subject_rows_through"]}
               if body.get("subject_rows_through") else {}),
            "request": str(request.pk), "certificate_sha256": digest,
            "audit": {"seq": entry.seq, "entry_hash": entry.entry_hash},
            "origin": origin()})


def origin() -> str | None:
    """This database's history: the hash of its first audit entry. A restored backup or a
    copy shares it; a database started afresh has its own (apps/core/erasure_ledger.py)."""
    return AuditEntry.objects.filter(seq=1).values_list("entry_hash", flat=True).first()


# --- where a database stands ------------------------------------------------------------

def _replayed_through(entries: Sequence[Mapping[str, Any]]) -> int:
    """The last ledger seq a replay recorded in this database (checked against the
    ledger's hash at that seq: a marker naming another ledger counts for nothing)."""
    marker = AuditEntry.objects.filter(operation=REPLAY_OPERATION).order_by("-seq").first()
    if marker is None:
        return 0
    seq = int(marker.summary.get("ledger_seq") or 0)
    if 0 < seq <= len(entries) and entries[seq - 1].get("hash") == marker.summary.get("ledger_hash"):
        return seq
    return 0


def _includes(entry: Mapping[str, Any]) -> bool:
    anchor = entry.get("audit") or {}
    return AuditEntry.objects.filter(seq=anchor.get("seq"),
                                     entry_hash=anchor.get("entry_hash")).exists()


def position(entries: Sequence[Mapping[str, Any]] | None = None) -> int:
    """The seq of the last ledger entry this database includes (0: none). Entries are
    appended in commit order, so the newest included one vouches for those before it."""
    entries = list(erasure_ledger.entries()) if entries is None else entries
    floor = _replayed_through(entries)
    for entry in reversed(entries):
        if entry["seq"] <= floor:
            break
        if _includes(entry):
            return int(entry["seq"])
    return floor


def pending(entries: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The ledger entries of this database's history (``origin``) that it does not
    include, oldest first. Another history's entries are not its own: a database started
    afresh beside an old key store holds none of what they erased (and its new namespace
    1 is not the old namespace 1), so they are never applied to it."""
    entries = list(erasure_ledger.entries()) if entries is None else entries
    mine = origin() if entries else None
    if mine is None:  # no ledger, or no audit entry yet: nothing it could hold
        return []
    after = position(entries)
    return [dict(entry) for entry in entries[after:] if entry.get("origin") == mine]


@register(TAG)
def check_ledger_position(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E013: the database is behind the erasure ledger (restored without ``manage.py
    restore``): serving it would serve erased people again."""
    if connection.in_atomic_block:  # a test's transaction: not a deployment's database
        return []
    try:
        entries = list(erasure_ledger.entries())
    except erasure_ledger.LedgerError as exc:
        return [Error(f"the erasure ledger in MEMORYWEB_KEYSTORE_DIR "
                      f"({keystore.directory()}) cannot be read: {exc}.", id=CHECK_ID)]
    if not entries:
        return []
    try:
        behind = pending(entries)
    except Exception:  # no database yet (before migrate): nothing it could serve
        return []
    if not behind:
        return []
    return [Error(
        f"the database is behind the erasure ledger: {len(behind)} erasure(s) recorded in "
        f"{erasure_ledger.path()} (from entry {behind[0]['seq']}) are not applied to it — a "
        "data directory or database restored without manage.py restore.", id=CHECK_ID,
        hint="Run manage.py replay_erasures (server stopped), then start the server.")]


def checks_but_position() -> list[CheckMessage]:
    """The settings checks for the commands that fix the position (``restore``,
    ``replay_erasures``): every serious one but E013, which is not even run (restore's
    target database must stay untouched until it is put in place)."""
    messages: list[CheckMessage] = []
    for check in registry.get_checks(include_deployment_checks=False):
        if TAG in getattr(check, "tags", ()) and check is not check_ledger_position:
            messages.extend(check(app_configs=None))
    return [message for message in messages if message.is_serious()]


# --- replay -----------------------------------------------------------------------------

@dataclass
class Replayed:
    """One re-applied ledger entry: what it was, and what was still there to erase."""

    seq: int
    kind: str
    namespace: str
    erased: int
    certificate_sha256: str = ""
    notes: list[str] = field(default_factory=list)


def replay(entries: Sequence[Mapping[str, Any]], *, after_commit: bool = True,
           progress: Callable[[Replayed], None] | None = None) -> list[Replayed]:
    """Re-apply ``entries`` (oldest first) and record each in the audit log.

    Erasures and retention expiries erase their memory ids through the write path and
    the store registry (``writes.erase``: every store an erasure empties), wherever the
    ids are now; ids whose rows are already gone still have the erasure-only stores
    cleared. An erasure by agent or session also erases what the database holds of that
    subject, matched by its keyed hash (:func:`_erase_subject`). A namespace deletion
    deletes the namespace again (same id and slug).
    ``after_commit=False``: leave the stores outside SQL (the vector index) alone, for a
    restore that rebuilds them from SQL afterwards. Resumable: each entry's record is
    written when it is done, and :func:`pending` starts after the last one."""
    from apps.tenancy.namespaces import delete_namespace  # tenancy's service, below us

    done: list[Replayed] = []
    for entry in entries:
        where = entry.get("namespace") or {}
        result = Replayed(int(entry["seq"]), str(entry["kind"]), str(where.get("slug", "")), 0,
                          str(entry.get("certificate_sha256", "")))
        namespace = Namespace.objects.filter(pk=where.get("id"), slug=where.get("slug")).first()
        ids = [str(pk) for pk in entry.get("memories") or []]
        if entry["kind"] == "namespace_deleted" and namespace is not None:
            result.erased += delete_namespace(REPLAYER, namespace, ledger=False)
            namespace = None
        elif entry["kind"] == "namespace_deleted":
            result.notes.append("the namespace is already gone")
        result.erased += _erase_ids(entry, namespace, ids, after_commit=after_commit)
        if namespace is not None:
            memories, rows = _erase_subject(entry, namespace, after_commit=after_commit)
            result.erased += memories
            if rows:
                result.notes.append("rows about the subject apart from memories: " + ", ".join(
                    f"{count} in {name}" for name, count in sorted(rows.items())))
        with transaction.atomic():
            audit(REPLAYER, REPLAY_OPERATION, namespace=namespace, record_ids=ids[:1000],
                  summary={"ledger_seq": entry["seq"], "ledger_hash": entry["hash"],
                           "kind": entry["kind"], "namespace": where,
                           "certificate_sha256": entry.get("certificate_sha256", ""),
                           "erased": result.erased})
        done.append(result)
        if progress is not None:
            progress(result)
    return done


def _erase_ids(entry: Mapping[str, Any], namespace: Namespace | None, ids: Sequence[str], *,
               after_commit: bool) -> int:
    """Erase the ids still held, in whichever namespace holds them now (a merge may have
    moved one); returns how many memory rows were erased."""
    held: dict[int, list[str]] = defaultdict(list)
    for pk, namespace_id in Memory.objects.filter(pk__in=ids).values_list("pk", "namespace_id"):
        held[namespace_id].append(str(pk))
    erased = 0
    for namespace_id, group in held.items():
        home = Namespace.objects.get(pk=namespace_id)

        def record(where: Namespace, removed_ids: Sequence[Any], removed: int) -> None:
            audit(REPLAYER, "memory.erase", namespace=where, record_ids=removed_ids,
                  summary={"ledger_seq": entry["seq"], "count": removed})

        with transaction.atomic():
            writes.erase(home, group, actor=REPLAYER, audit=record)
        if after_commit:
            writes.erase_after_commit(home, group)
        erased += len(group)
    gone = [pk for pk in ids if not any(pk in group for group in held.values())]
    if namespace is not None and gone:  # rows gone, but an erasure-only store may name them
        with transaction.atomic():
            writes.erase_again(namespace, gone)
        if after_commit:
            writes.erase_after_commit(namespace, gone)
    return erased


def _erase_subject(entry: Mapping[str, Any], namespace: Namespace, *, after_commit: bool
                   ) -> tuple[int, dict[str, int]]:
    """An erasure by ``agent_id`` or ``session_id``: what this database still holds of that
    subject, found by the keyed hash the entry recorded (never the value itself) — its
    memories (an older backup may hold some the erasure never listed: deleted before it,
    back with the restore) and every store's rows about it apart from memories
    (``Store.subject_erase``: what its key taught the gateway). Everything in a database
    behind the ledger is older than the entry, so all of it was the subject's then; the
    search is still bounded by when the erasure ran (``through``, else the entry's time),
    so a line whose erasure never committed cannot take what the subject made after it.
    Returns the memories erased and the other rows, per store."""
    hashed = entry.get("selector") or {}
    through = datetime.fromisoformat(entry.get("through") or entry["at"])
    memories, rows = 0, defaultdict(int)
    for name in stores.SUBJECT_ROW_FIELDS:
        wanted = hashed.get(name)
        if not wanted:
            continue
        held = set(Memory.objects.filter(namespace=namespace, created_at__lte=through)
                   .exclude(**{name: ""}).values_list(name, flat=True).distinct())
        for store in stores.stores():
            if store.subject_values is not None:
                held.update(store.subject_values(namespace, name))
        for value in sorted(held):
            if keystore.keyed_hash(name, json.dumps(value, sort_keys=True)) != wanted:
                continue
            with transaction.atomic():
                for store, count in writes.erase_subject(namespace, name, value,
                                                         before=through).items():
                    rows[store] += count
            ids = [str(pk) for pk in Memory.objects.filter(
                namespace=namespace, created_at__lte=through, **{name: value})
                .values_list("pk", flat=True)]
            memories += _erase_ids(entry, namespace, ids, after_commit=after_commit)
    return memories, dict(rows)


def replayed_certificate(digest: str, anchor: Mapping[str, Any]) -> tuple[int, int] | None:
    """For a certificate whose audit entry this database does not hold (restored from an
    older backup): ``(ledger seq, audit seq of its replay)`` when an intact ledger entry
    records this certificate's hash and audit anchor and this database replayed it."""
    verdict = erasure_ledger.verify()  # only the intact part of the chain counts
    intact = verdict.entries if verdict.ok else (verdict.broken or (1, ""))[0] - 1
    for entry in islice(erasure_ledger.entries(), max(0, intact)):
        if (entry.get("certificate_sha256") == digest
                and (entry.get("audit") or {}).get("seq") == anchor.get("seq")
                and (entry.get("audit") or {}).get("entry_hash") == anchor.get("entry_hash")):
            marker = AuditEntry.objects.filter(
                operation=REPLAY_OPERATION, summary__ledger_hash=entry["hash"]).first()
            if marker is not None:
                return int(entry["seq"]), marker.seq
    return None
