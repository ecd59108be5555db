"""Turning encryption on for a namespace that already holds memories, and re-sealing an
encrypted one under its current data key version (issue 23 item 3, docs/encryption.md,
"Turning encryption on"). ``manage.py encrypt_namespace`` drives it.

Why this order, and why it is safe while the server keeps serving:

1. **The key, then the flag.** The namespace's data key is made first (idempotent), then
   ``Namespace.encrypted`` is set, audited, in one transaction with the rebuild of the
   keyword index as blind tokens: a process that reads the flag from SQL sees the token
   index with it (SQLite readers keep the old snapshot until the commit).
2. **Settle.** A process that asked about the namespace just before keeps its "plain"
   answer for ``sealing._PLAIN_TTL_SECONDS`` (and a request holds the namespace row it
   loaded while it runs): the sweep waits that long (:func:`settle_seconds`) so no process
   keeps writing plaintext behind it. What one still writes is found by the next pass.
3. **Sweep**, in primary-key order, a batch per short transaction: the batch's rows are
   locked (``select_for_update`` on PostgreSQL; SQLite's IMMEDIATE transaction holds the
   write lock) and read again inside it, so what is sealed is the row as it is now — a
   concurrent edit either committed first (its text is what gets sealed) or waits and
   then writes sealed itself (the flag is on). The rows go back through
   ``MemoryQuerySet.bulk_update``, which seals them (the bulk door sealing.py leaves open:
   a plain ``update()`` of a sealed field is refused there). Content, metadata and
   every version's changes are sealed; ``content_hash`` and ``dedup_slot`` become the
   keyed hash (a slot another row already holds under the keyed hash — an ingest since
   the flag went on — is given up, as an edit gives it up).
   The other stores' sealed columns of the namespace (gateway exchanges, facts and
   traces, timeline summaries, erasure requests: any model whose sealed fields name their
   namespace) are sealed the same way, after the memories, and their keyed-hash columns
   (:func:`register_keyed_hash`: a learned fact's ``key``) are recomputed from the
   opened text in the same batch.
4. **Passes until nothing is left**: the sweep is a re-scan, so it is idempotent and a run
   cut short resumes by running again; the last pass must change nothing, then a
   verification counts what SQL holds in clear (0 or the command fails).
5. **The keyword index is rebuilt** once more from the sealed rows, for what processes
   that still thought the namespace plain indexed in words meanwhile.

Re-sealing (``reseal``) is the same sweep for a namespace already encrypted: every value
sealed under a data key version other than the current one is sealed again under it;
afterwards the older versions (never version 1, whose purpose keys derive the tokens and
hashes) are retired when nothing uses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction

from apps.audit.log import record as audit
from apps.core import envelope, namespace_keys
from apps.memories import lexical, plain_vectors, sealing
from apps.memories.models import Memory, MemoryVersion, content_hash
from apps.tenancy.models import Namespace

#: Rows per batch transaction: short enough that a concurrent write waits milliseconds.
BATCH_SIZE = 500
#: Passes after which rows still being written in clear are reported, not chased.
MAX_PASSES = 5
#: Margin over the sealing cache's "plain" lifetime (clock granularity, a request in flight).
_SETTLE_MARGIN = 1.0
_RETRIES = 5


def settle_seconds() -> float:
    """How long to wait after the flag goes on before sweeping: every process's cached
    "not encrypted" answer has expired by then (sealing.py)."""
    return sealing._PLAIN_TTL_SECONDS + _SETTLE_MARGIN


class Interrupted(Exception):
    """The sweep stopped after the batches it was allowed (``max_batches``); run again."""


@dataclass
class Counts:
    """What a run did and found; the audit entry's summary (counts only, never text)."""

    memories: int = 0
    contents_sealed: int = 0
    other_values_sealed: int = 0
    versions_sealed: int = 0
    hashes_keyed: int = 0
    slots_given_up: int = 0
    resealed: int = 0
    passes: int = 0
    store_values_sealed: int = 0
    store_hashes_keyed: int = 0
    store_rows_merged: int = 0
    filters_unindexed: int = 0
    left_plain_contents: int = 0
    left_plain_other: int = 0
    left_plain_versions: int = 0
    left_plain_store_values: int = 0
    left_stale_store_hashes: int = 0
    left_old_versions: int = 0
    retired_versions: list[int] = field(default_factory=list)
    index_rows: int = 0

    def changed(self) -> int:
        return (self.contents_sealed + self.other_values_sealed + self.versions_sealed
                + self.hashes_keyed + self.slots_given_up + self.resealed
                + self.store_values_sealed + self.store_hashes_keyed + self.store_rows_merged)

    def add(self, other: Counts) -> None:
        for name in ("contents_sealed", "other_values_sealed", "versions_sealed",
                     "hashes_keyed", "slots_given_up", "resealed", "store_values_sealed",
                     "store_hashes_keyed", "store_rows_merged", "filters_unindexed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, Any]:
        return asdict(self)


# --- 1. the key and the flag ------------------------------------------------------------

def turn_on(namespace: Namespace, actor: str) -> bool:
    """Give the namespace its data key and set ``encrypted``, audited, with the keyword
    index rebuilt as blind tokens in the same transaction; whether it was off. From here
    this process seals the namespace's writes at once."""
    if namespace.encrypted:
        sealing.namespace_encrypted(namespace.pk, namespace)
        return False
    version = namespace_keys.create(namespace.pk, namespace.slug)
    try:
        with transaction.atomic():
            locked = Namespace.objects.select_for_update().get(pk=namespace.pk)
            namespace.encrypted = True
            sealing.namespace_encrypted(namespace.pk, namespace)  # this process: for good
            if not locked.encrypted:
                locked.encrypted = True
                locked.save(update_fields=["encrypted"])
                lexical.rebuild(namespace.pk)  # blind tokens, committed with the flag
                audit(actor, "encryption.encrypt_namespace", namespace=namespace, summary={
                    "encrypted": True, "key_version": version,
                    "memories": Memory.objects.filter(namespace_id=namespace.pk).count()})
                return True
    except BaseException:
        namespace.encrypted = False
        sealing.forget()  # the flag did not commit: this process must not believe it
        raise
    return False


# --- 3. the sweep ----------------------------------------------------------------------

def _sealed_version(value: Any) -> int | None:
    """The key version a stored value is sealed under, None for a value in clear."""
    if isinstance(value, sealing.SealedValue):
        return envelope.version_of(envelope.sealed_bytes(value.stored))
    return None


def _needs(value: Any, current: int | None) -> bool:
    """Whether a stored value must be (re)sealed: in clear, or (re-sealing) under
    another version than ``current``."""
    version = _sealed_version(value)
    return version is None or (current is not None and version != current)


def _retrying(work: Callable[[], Counts]) -> Counts:
    """Run a batch's transaction again when a concurrent write won a race (a dedup slot
    claimed meanwhile, a PostgreSQL deadlock): the next try reads what it committed."""
    for attempt in range(_RETRIES):
        try:
            return work()
        except (IntegrityError, DatabaseError):
            if attempt == _RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def seal_batch(namespace: Namespace, ids: list[Any], current: int | None = None) -> Counts:
    """Seal one batch of the namespace's memories (and their versions) in its own
    transaction; ``current``: re-seal values under other key versions too."""
    return _retrying(lambda: _seal_batch(namespace, ids, current))


def _memory_fields() -> tuple[list[Any], list[Any]]:
    """Memory's sealed fields (``content``, and ``metadata`` where it is sealed) and the
    fields derived from them on save (``metadata_blind``, the values' blind tokens)."""
    sealed = [Memory._meta.get_field(name) for name in sealing.sealed_fields(Memory)]
    derived = [f for f in Memory._meta.concrete_fields if f.name == "metadata_blind"]
    return sealed, derived


def _seal_batch(namespace: Namespace, ids: list[Any], current: int | None) -> Counts:
    counts = Counts()
    sealed_fields, derived = _memory_fields()
    changes_field = MemoryVersion._meta.get_field("changes")
    refiltered: list[Any] = []
    with transaction.atomic():
        rows = list(Memory.objects.select_for_update().filter(
            namespace_id=namespace.pk, pk__in=ids).order_by("pk").only(
            "id", "namespace_id", "content_hash", "dedup_slot",
            *(f.name for f in sealed_fields), *(f.name for f in derived)))
        plans = []
        for memory in rows:
            stored = {f.attname: memory.__dict__[f.attname] for f in sealed_fields}
            memory._state.fields_cache["namespace"] = namespace
            for f in sealed_fields:
                getattr(memory, f.attname)  # opened if sealed (under any version still kept)
            digest = content_hash(memory.content, namespace)
            slot = memory.dedup_slot
            wanted = digest if slot is not None and slot in (memory.content_hash, digest) else None
            to_seal = [f for f in sealed_fields if stored[f.attname] is not None
                       and _needs(stored[f.attname], current)]
            plans.append((memory, stored, digest, wanted, to_seal))
        held = dict(Memory.objects.filter(
            namespace_id=namespace.pk, dedup_slot__in=[w for _, _, _, w, _ in plans if w]
        ).values_list("dedup_slot", "pk"))
        groups: dict[tuple[str, ...], list[Memory]] = {}
        for memory, stored, digest, wanted, to_seal in plans:
            if wanted is not None and held.get(wanted, memory.pk) != memory.pk:
                wanted = None  # held by a memory ingested since the flag went on
            fields: list[str] = [f.name for f in to_seal]
            if digest != memory.content_hash or wanted != memory.dedup_slot:
                counts.hashes_keyed += digest != memory.content_hash
                counts.slots_given_up += memory.dedup_slot is not None and wanted is None
                memory.content_hash, memory.dedup_slot = digest, wanted
                fields += ["content_hash", "dedup_slot"]
            for f in derived:
                before = memory.__dict__.get(f.attname)
                after = f.pre_save(memory, False)  # from the opened values
                if after != before:
                    fields.append(f.name)
                    if (after or {}) != (before or {}):  # what Chroma's filters hold changes
                        refiltered.append(memory.pk)
            if not fields:
                continue
            if wanted is not None:
                held[wanted] = memory.pk
            for f in to_seal:
                if _sealed_version(stored[f.attname]) is None:
                    counts.contents_sealed += f.name == "content"
                    counts.other_values_sealed += f.name != "content"
                else:
                    counts.resealed += 1
            groups.setdefault(tuple(sorted(fields)), []).append(memory)
        # The rows are locked and were read inside this transaction, so what is written is
        # their current text, sealed by MemoryQuerySet.bulk_update from the opened values.
        for fields_of, memories in groups.items():
            Memory.objects.bulk_update(memories, list(fields_of))
        plain_vectors.rehash([memory.pk for memory in rows])  # keyed hashes there too
        by_pk = {memory.pk: memory for memory in rows}
        resealed_versions = []
        for version in MemoryVersion.objects.select_for_update().filter(
                memory_id__in=list(by_pk)).order_by("pk").only(
                "id", "memory_id", "version", "changes"):
            stored_changes = version.__dict__["changes"]
            if stored_changes is None or not _needs(stored_changes, current):
                continue
            version._state.fields_cache["memory"] = by_pk[version.memory_id]
            version.changes  # noqa: B018 -- opened (if sealed) so it is sealed afresh
            version.__dict__["changes"] = sealing.outgoing(changes_field, version)
            resealed_versions.append(version)
            if _sealed_version(stored_changes) is None:
                counts.versions_sealed += 1
            else:
                counts.resealed += 1
        MemoryVersion.objects.bulk_update(resealed_versions, ["changes"])
    counts.filters_unindexed += _refilter(namespace, refiltered)
    return counts


def _refilter(namespace: Namespace, ids: list[Any]) -> int:
    """The vector index's filter fields of memories whose metadata was just sealed: the
    blind tokens replace the values there too (Chroma's filters compare what the
    namespace's recall filters send: tokens once it is encrypted). Vectors are kept.
    Returns how many could not be updated (``manage.py reindex`` rebuilds them)."""
    if not ids:
        return 0
    from apps.memories.vectorstore import chroma_metadata, get_vector_store

    memories = list(Memory.objects.filter(pk__in=ids))
    try:
        target = Namespace.objects.get(pk=namespace.pk)  # a reindex may have swapped it
        get_vector_store().update_metadata(target, [str(m.pk) for m in memories],
                                           [chroma_metadata(m) for m in memories])
    except Exception:  # the SQL is sealed; the filters wait for a reindex
        return len(ids)
    return 0


def sweep(namespace: Namespace, *, current: int | None = None, batch_size: int = BATCH_SIZE,
          progress: Callable[[int], None] | None = None,
          budget: list[int] | None = None) -> Counts:
    """One pass over every memory of the namespace, a batch at a time in primary-key
    order. ``budget`` (``[batches left]``, shared across passes): :class:`Interrupted`
    once it is spent — a cut-short run, resumed by running again."""
    counts = Counts()
    after = None
    while True:
        page = Memory.objects.filter(namespace_id=namespace.pk).order_by("pk")
        if after is not None:
            page = page.filter(pk__gt=after)
        ids = list(page.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return counts
        if budget is not None:
            if budget[0] <= 0:
                raise Interrupted
            budget[0] -= 1
        counts.add(seal_batch(namespace, ids, current))
        counts.memories += len(ids)
        after = ids[-1]
        if progress is not None:
            progress(len(ids))


# --- 3b. the other stores' sealed columns -----------------------------------------------

def other_stores() -> list[tuple[type, list[Any]]]:
    """Every other model with sealed columns that name their namespace (the gateway's
    exchanges, facts and traces, the timeline's summaries and excerpts, erasure requests:
    sealing.SealedText/SealedJSON), found through the app registry, not imported (they
    sit in the layers above this one)."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        if model in (Memory, MemoryVersion):
            continue
        fields = [model._meta.get_field(name) for name in sealing.sealed_fields(model)]
        fields = [f for f in fields if getattr(f, "namespace_attr", None)]
        if fields:
            found.append((model, fields))
    return found


def _store_rows(model: type, fields: list[Any], namespace: Namespace) -> Any:
    return model._default_manager.filter(
        **{fields[0].namespace_attr.replace(".", "__"): namespace.pk})


@dataclass(frozen=True)
class KeyedHash:
    """A keyed-hash column of another store (``sealing.keyed_hash`` of its text: plain
    SHA-256 while the namespace was plain, an HMAC under a purpose key once encrypted),
    which the sweep recomputes from the row's opened values. ``compute(row, namespace)``:
    the hash as the store's own code would write it now. ``merge(row, holder)``, for a
    column unique per namespace: ``holder`` (another row, locked) already holds the hash
    ``row`` must take — written since the switch, when the stale hash no longer matched
    (a fact seen again) — and is to be folded into ``row`` and deleted, ``merge`` writing
    what it changes of ``row`` itself (the sweep writes the column); True when it was,
    False leaves ``row`` stale (the verification reports it). Registered by the store's
    app (``AppConfig.ready``): the apps holding them sit in the layers above."""

    model: type
    column: str
    compute: Callable[[Any, Namespace], str]
    merge: Callable[[Any, Any], bool] | None = None


_keyed_hashes: dict[tuple[type, str], KeyedHash] = {}


def register_keyed_hash(entry: KeyedHash) -> None:
    """Have ``encrypt_namespace`` recompute this column (idempotent: by model and column)."""
    _keyed_hashes[(entry.model, entry.column)] = entry


def keyed_hashes(model: type) -> list[KeyedHash]:
    return [entry for (m, _), entry in _keyed_hashes.items() if m is model]


def seal_other_stores(namespace: Namespace, current: int | None = None,
                      batch_size: int = BATCH_SIZE) -> Counts:
    """Seal (or re-seal) the other stores' values of the namespace, a batch of rows per
    transaction, each row locked and read again as for memories, and recompute their
    registered keyed hashes (:class:`KeyedHash`) from the opened values."""
    counts = Counts()
    for model, fields in other_stores():
        after = None
        while True:
            page = _store_rows(model, fields, namespace).order_by("pk")
            if after is not None:
                page = page.filter(pk__gt=after)
            ids = list(page.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            counts.add(_retrying(lambda m=model, f=fields, i=ids: _seal_rows(
                m, f, i, current, namespace)))
            after = ids[-1]
    return counts


def _seal_rows(model: type, fields: list[Any], ids: list[Any], current: int | None,
               namespace: Namespace) -> Counts:
    counts = Counts()
    hashes = keyed_hashes(model)
    with transaction.atomic():
        for row in model._default_manager.select_for_update().filter(pk__in=ids).order_by("pk"):
            stored = {f.attname: row.__dict__.get(f.attname) for f in fields}
            names = []
            for entry in hashes:  # first: computed from the opened values
                names += _rekey(entry, row, namespace, counts)
            for f in fields:
                if stored[f.attname] is None or not _needs(stored[f.attname], current):
                    continue
                getattr(row, f.attname)  # opened if sealed under an older version
                value = sealing.outgoing(f, row)
                if value is not None:
                    # Ciphertext on the instance: whatever the model's bulk_update does, it
                    # stores this as it is (an Outgoing value is never opened or re-sealed).
                    row.__dict__[f.attname] = value
                    names.append(f.name)
                    if _sealed_version(stored[f.attname]) is None:
                        counts.store_values_sealed += 1
                    else:
                        counts.resealed += 1
            if names:
                model._default_manager.bulk_update([row], names)
    return counts


def _rekey(entry: KeyedHash, row: Any, namespace: Namespace, counts: Counts) -> list[str]:
    """Recompute one keyed hash of a locked row; the column's name when it changed."""
    wanted = entry.compute(row, namespace)
    if getattr(row, entry.column) == wanted:
        return []
    if entry.merge is not None:
        holder = _store_rows_of(entry.model, namespace).select_for_update().filter(
            **{entry.column: wanted}).exclude(pk=row.pk).first()
        if holder is not None:
            if not entry.merge(row, holder):
                return []
            counts.store_rows_merged += 1
    setattr(row, entry.column, wanted)
    counts.store_hashes_keyed += 1
    return [entry.column]


def _store_rows_of(model: type, namespace: Namespace) -> Any:
    fields = [model._meta.get_field(name) for name in sealing.sealed_fields(model)]
    return _store_rows(model, [f for f in fields if getattr(f, "namespace_attr", None)],
                       namespace)


def stale_store_hashes(namespace: Namespace) -> int:
    """Rows of the namespace whose registered keyed hash is not what their store would
    compute now (an unkeyed hash left from before the switch), their values opened."""
    stale = 0
    for (model, _), entry in list(_keyed_hashes.items()):
        for row in _store_rows_of(model, namespace).order_by().iterator(chunk_size=500):
            stale += getattr(row, entry.column) != entry.compute(row, namespace)
    return stale


# --- 4. verification --------------------------------------------------------------------

def _stored(namespace: Namespace) -> list[tuple[str, Any]]:
    """``(counter, values as stored)`` for every sealed column of the namespace's rows."""
    memories = Memory.objects.filter(namespace_id=namespace.pk).order_by()
    versions = MemoryVersion.objects.filter(memory__namespace_id=namespace.pk).order_by()
    found = [("left_plain_contents" if name == "content" else "left_plain_other",
              memories.exclude(**{f"{name}__isnull": True}).values_list(name, flat=True))
             for name in sealing.sealed_fields(Memory)]
    found.append(("left_plain_versions", versions.values_list("changes", flat=True)))
    for model, fields in other_stores():
        rows = _store_rows(model, fields, namespace).order_by()
        found += [("left_plain_store_values", rows.exclude(**{f"{f.name}__isnull": True})
                   .values_list(f.name, flat=True)) for f in fields]
    return found


def verify(namespace: Namespace, counts: Counts, current: int | None = None) -> Counts:
    """What SQL still holds in clear for the namespace (and, re-sealing, under another
    key version than ``current``), read raw: the values as stored, nothing opened; and
    the other stores' hashes not yet keyed (:func:`stale_store_hashes`, opened)."""
    counts.left_plain_contents = counts.left_plain_other = 0
    counts.left_plain_versions = counts.left_old_versions = counts.left_plain_store_values = 0
    counts.left_stale_store_hashes = stale_store_hashes(namespace)
    for name, values in _stored(namespace):
        for value in values.iterator(chunk_size=2000):
            version = _sealed_version(value)
            if version is None:
                setattr(counts, name, getattr(counts, name) + 1)
            elif current is not None and version != current:
                counts.left_old_versions += 1
    return counts


def versions_in_use(namespace: Namespace) -> set[int]:
    """The data key versions the namespace's stored values are sealed under."""
    return {version for _, values in _stored(namespace)
            for value in values.iterator(chunk_size=2000)
            if (version := _sealed_version(value)) is not None}


# --- the whole run ----------------------------------------------------------------------

def run(namespace: Namespace, *, actor: str, reseal: bool = False,
        settle: float | None = None, batch_size: int = BATCH_SIZE,
        max_batches: int | None = None, retire: bool = True,
        bar: Callable[[int, int], Callable[[int], None]] | None = None,
        say: Callable[[str], None] = lambda _: None) -> Counts:
    """Encrypt the namespace's existing memories (or, ``reseal``, move them to its current
    key version): steps 1-5 of the module's docstring. ``settle``: the wait before the
    sweep (default :func:`settle_seconds`); ``bar(pass, total)`` gives each pass its
    progress callback. :class:`Interrupted` when ``max_batches`` runs out."""
    current = None
    if reseal:
        if not namespace.encrypted:
            raise ValueError(f"{namespace.slug!r} is not encrypted: run encrypt_namespace "
                             "without --reseal first.")
        sealing.namespace_encrypted(namespace.pk, namespace)
        current = namespace_keys.data_key(namespace.pk)[0]
    else:
        if turn_on(namespace, actor):
            say(f"{namespace.slug}: encryption is on (data key made, keyword index rebuilt "
                "as blind tokens); new writes are sealed.")
        wait = settle_seconds() if settle is None else settle
        if wait > 0:
            say(f"waiting {wait:g} s for every process to see the namespace encrypted")
            time.sleep(wait)
    budget = None if max_batches is None else [max_batches]
    counts = Counts()
    total = Memory.objects.filter(namespace_id=namespace.pk).count()
    for number in range(1, MAX_PASSES + 1):
        done = sweep(namespace, current=current, batch_size=batch_size, budget=budget,
                     progress=None if bar is None else bar(number, total))
        done.add(seal_other_stores(namespace, current, batch_size))
        counts.add(done)
        counts.memories, counts.passes = done.memories, number
        if not done.changed():
            break
        total = done.memories
    with transaction.atomic():
        counts.index_rows = lexical.rebuild(namespace.pk)
    verify(namespace, counts, current)
    if reseal and retire and not counts.left_old_versions:
        kept = {namespace_keys.PURPOSE_VERSION, current} | versions_in_use(namespace)
        for version in _key_versions(namespace.pk):
            if version not in kept:
                namespace_keys.retire(namespace.pk, version)
                counts.retired_versions.append(version)
    with transaction.atomic():
        audit(actor, "encryption.reseal" if reseal else "encryption.namespace_sealed",
              namespace=namespace, summary=counts.summary())
    return counts


def _key_versions(namespace_id: int) -> tuple[int, ...]:
    for status in namespace_keys.status():
        if status.namespace_id == namespace_id:
            return status.versions
    return ()
