"""The registry of stores: every place a memory, or anything derived from it, is held.

One declared list instead of hand-written ones: erasure (execution and its checks),
``verify_certificate``, ``stats`` and ``reindex`` iterate over :func:`stores`, so a store
registered here is erased, verified, counted and rebuilt without touching them; a store
missing from it would make a deletion certificate false, which is why
``tests/memories/test_store_registry.py`` fails when a model that references a memory is
covered by no registered store (:func:`uncovered`).

Each :class:`Store` says how erasure reaches it (:class:`ErasedBy`): with the memory row
(SQL cascade), through the memory delete path, only through erasure's own ``erase``, or
not at all (``KEPT``, with the reason: the audit log keeps ids and counts, never content).
The operations are optional; a consumer skips a store that lacks the one it needs:

- ``count(namespace, ids=None)``: entries held (``stats``; ids: before an erasure);
- ``remaining(namespace, erased)``: how many erased ids or hashes it still holds
  (erasure's checks and ``verify_certificate``; the namespace is None once deleted);
- ``erase(namespace, ids)``: remove them; for a store the delete path already reaches,
  the finishing step (merge the keyword index, delete vectors again: idempotent);
- ``rebuild(namespace, progress)``: re-derive it from SQL, the truth (``reindex``);
- ``touched(namespace, ids)``: what an erasure changes there besides removing the ids
  (listed in the certificate);
- ``subject_count`` / ``subject_erase`` / ``subject_values``: rows about a person held
  apart from any memory (what an agent's key taught the gateway), for an erasure by
  ``agent_id`` or ``session_id`` and its replay after a restore (:data:`SUBJECT_ROW_FIELDS`).

Memories registers its own stores (and those of the apps below it, which cannot import
this module: the audit log) from ``MemoriesConfig.ready`` (apps/memories/own_stores.py);
an app above memories with memory-derived data registers its stores from its own
``AppConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from apps.tenancy.models import Namespace

#: Ids per statement (well under SQLite's bound-parameter limit).
CHUNK = 500

Progress = Callable[[int], None]

#: The subject fields a store's own rows may be erased by (``Store.subject_*``): who the
#: rows came from. A metadata subject or explicit ids select memories only.
SUBJECT_ROW_FIELDS = ("agent_id", "session_id")


class ErasedBy(StrEnum):
    """How an erasure reaches a store (docs/privacy.md, "The stores")."""

    #: SQL ``ON DELETE CASCADE`` from the memory row: gone in the delete's statement.
    CASCADE = "cascade"
    #: The memory delete path writes it (the rows, keyword rows, outbox, vector unindex);
    #: erasure may add a finishing step (``erase``) and checks it.
    DELETE_PATH = "delete path"
    #: An ordinary delete leaves it; erasure removes it (``erase``) and checks it.
    ERASURE = "erasure"
    #: Deliberately kept by erasure: ``kept_because`` says why (never content).
    KEPT = "kept"


@dataclass(frozen=True)
class Erased:
    """What an erasure removed: memory ids, their content hashes, and the ids of memories
    outside the selection that held identical content (kept, so not counted); and its
    certificate's ``touched`` (what it changed around them, by store: a check may read
    only those, as ``merged_survivors`` does)."""

    ids: tuple[str, ...]
    hashes: tuple[str, ...] = ()
    retained: tuple[str, ...] = ()
    touched: Mapping[str, Any] = dataclass_field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Store:
    """One place memory data lives, and what the four consumers may do with it."""

    #: The key in certificates' ``verification`` and ``stats --json``'s ``stores``.
    name: str
    #: What a check asks, in words (the dashboard's certificate card).
    label: str
    #: What it holds and why erasure treats it so (docs/privacy.md lists these).
    description: str
    erased_by: ErasedBy
    #: The SQL models it covers (the registry test matches these against every model
    #: that references a memory).
    models: tuple[type[models.Model], ...] = ()
    kept_because: str = ""
    count: Callable[[Namespace, Sequence[Any] | None], int | None] | None = None
    remaining: Callable[[Namespace | None, Erased], int | None] | None = None
    erase: Callable[[Namespace, Sequence[Any]], None] | None = None
    #: ``erase`` runs after the SQL transaction that deleted the rows (a store outside
    #: SQL, or the record of work on it): a failure leaves the request ``executing`` and
    #: a retried execute runs it again.
    after_commit: bool = False
    #: Held outside the SQL database (may be unavailable; ``stats --no-vectors`` skips it).
    external: bool = False
    #: One entry per memory of the namespace: ``stats`` reports a different count as
    #: "reindex needed" (or the outbox still draining).
    mirrors_memories: bool = False
    rebuild: Callable[[Namespace, Progress], int | None] | None = None
    #: Drop what belongs to namespaces that no longer exist; returns what it dropped, in
    #: words ("the keyword table of deleted namespace 7"). ``reindex`` of every namespace.
    drop_orphans: Callable[[], list[str]] | None = None
    #: Its key in a certificate's ``counts`` (counted before the erasure), if any.
    certificate_count: str | None = None
    #: ``touched(namespace, ids)``: what an erasure of these ids changes in this store
    #: besides removing them (ids and periods, never content), asked before it runs and
    #: listed in the certificate's ``touched`` under the store's name (the rollup nodes
    #: rebuilt without the erased memories, apps/timeline/erasure.py).
    touched: Callable[[Namespace, Sequence[Any]], list[Any]] | None = None
    #: ``export(namespace, selection)``: its rows about a subject (privacy's Selector; None:
    #: the namespace) as dicts, exported as lines typed with the store's name.
    export: Callable[[Namespace, Any], Iterable[dict[str, Any]]] | None = None
    #: Rows about a subject that name no memory (a fact an agent's key taught, still in
    #: quarantine): ``subject_count(namespace, field, value)`` — an erasure of that agent or
    #: session is not refused as "nothing to erase" while any store holds some, and checks
    #: it again after; ``subject_erase(namespace, field, value)`` removes them in the
    #: erasure's transaction; ``subject_values(namespace, field)``: the values its rows
    #: hold, for a ledger replay that knows the subject only by its keyed hash. ``field``
    #: is one of :data:`SUBJECT_ROW_FIELDS`.
    #: ``before`` (a datetime or None): only rows made up to then — an erasure takes and
    #: checks what existed when it ran, not what the same agent's key sends afterwards.
    subject_count: Callable[[Namespace, str, str, Any], int] | None = None
    subject_erase: Callable[[Namespace, str, str, Any], int] | None = None
    subject_values: Callable[[Namespace, str], Iterable[str]] | None = None


_registry: dict[str, Store] = {}
#: Models that look like they reference memories but are declared not to: label -> why.
_exempt: dict[str, str] = {}


def register(store: Store) -> Store:
    """Add a store (registering the very same store again is a no-op). A store with some
    of the ``subject_*`` operations has all three: one it can count but not erase would
    leave an erasure that can never be certified."""
    subject = (store.subject_count, store.subject_erase, store.subject_values)
    if any(subject) and not all(subject):
        raise ImproperlyConfigured(f"memory store {store.name!r} declares only some of "
                                   "subject_count, subject_erase and subject_values")
    existing = _registry.get(store.name)
    if existing is not None and existing != store:
        raise ImproperlyConfigured(f"two memory stores are named {store.name!r}")
    _registry[store.name] = store
    return store


def unregister(name: str) -> None:
    """Remove a store (tests that register a fake one)."""
    _registry.pop(name, None)


def stores() -> tuple[Store, ...]:
    """Every registered store, in registration order (the order of certificates' checks)."""
    return tuple(_registry.values())


def get(name: str) -> Store | None:
    return _registry.get(name)


def exempt(label: str, reason: str) -> None:
    """Declare that a model which could name a memory (a generic relation) holds none."""
    _exempt[label] = reason


# --- the registry check -----------------------------------------------------------------

#: A model attribute naming fields that hold memory ids without a foreign key (a JSON list,
#: a UUID column), for models whose field names do not say so: ``memory_id_fields = ("targets",)``.
MEMORY_ID_FIELDS = "memory_id_fields"


def memory_references(model: type[models.Model]) -> list[str]:
    """Why ``model`` may hold a memory or its data: a relation to Memory, a field named or
    declared as holding memory ids, or a generic relation (content type and object id)."""
    from apps.memories.models import Memory

    found = ["the memory rows themselves"] if model is Memory else []
    fields = [f for f in model._meta.get_fields(include_hidden=True) if f.concrete]
    for field in fields:
        if field.is_relation and field.related_model is Memory:
            found.append(f"{field.name} -> Memory")
        elif not field.is_relation and field.name.endswith(("memory_id", "memory_ids")):
            found.append(f"{field.name} holds memory ids")
    found += [f"{name} holds memory ids (declared)" for name in getattr(model, MEMORY_ID_FIELDS, ())]
    names = {f.name for f in fields}
    if (any(f.is_relation and f.related_model is not None
            and f.related_model._meta.label == "contenttypes.ContentType" for f in fields)
            and names & {"object_id", "object_pk"}):
        found.append("generic relation (content type and object id) may name a memory")
    return found


def uncovered(candidates: Iterable[type[models.Model]] | None = None) -> list[str]:
    """The models referencing memories that no registered store covers (nor an exemption),
    as "app.Model: why"; ``candidates`` defaults to every installed model."""
    from django.apps import apps

    covered = {model._meta.label for store in stores() for model in store.models} | set(_exempt)
    problems = []
    for model in apps.get_models() if candidates is None else candidates:
        reasons = memory_references(model)
        if reasons and model._meta.label not in covered:
            problems.append(f"{model._meta.label}: {'; '.join(reasons)}")
    return problems


# --- helpers for SQL stores -------------------------------------------------------------

def chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def count_in(queryset: models.QuerySet, field: str, values: Sequence[Any]) -> int:
    """Rows of ``queryset`` whose ``field`` is one of ``values`` (chunked)."""
    return sum(queryset.filter(**{f"{field}__in": part}).count() for part in chunks(values))


def rows_count(model: type[models.Model], namespace_path: str, id_field: str
          ) -> Callable[[Namespace, Sequence[Any] | None], int]:
    """``count`` of a table keyed by memory id (all of the namespace's, or these ids)."""
    def count(namespace: Namespace, ids: Sequence[Any] | None = None) -> int:
        queryset = model._default_manager.filter(**{namespace_path: namespace})
        return queryset.count() if ids is None else count_in(queryset, id_field, ids)
    return count


def rows_remaining(model: type[models.Model], id_field: str
          ) -> Callable[[Namespace | None, Erased], int | None]:
    """``remaining`` of a table keyed by memory id (checked while the namespace exists)."""
    def remaining(namespace: Namespace | None, erased: Erased) -> int | None:
        if namespace is None:
            return None  # its rows went with the namespace
        return count_in(model._default_manager.all(), id_field, erased.ids)
    return remaining


def subject_rows(namespace: Namespace, field: str, value: str, before: Any = None
                 ) -> dict[str, int]:
    """Per store, the rows about ``field = value`` held apart from any memory (made up to
    ``before``, if given; only the stores that hold some)."""
    if field not in SUBJECT_ROW_FIELDS:
        return {}
    found = {store.name: store.subject_count(namespace, field, value, before)
             for store in stores() if store.subject_count is not None}
    return {name: count for name, count in found.items() if count}


def subject_columns(model: type[models.Model], made: str,
                    fields: Sequence[str] = SUBJECT_ROW_FIELDS) -> dict[str, Callable[..., Any]]:
    """A Store's ``subject_*`` operations for a table with a ``namespace``, columns of the
    subject's fields and ``made``, when a row was made (``Store(..., **subject_columns(
    Model, "created_at"))``)."""
    def rows(namespace: Namespace, field: str, value: str, before: Any) -> models.QuerySet:
        manager = model._default_manager
        if field not in fields:
            return manager.none()
        found = manager.filter(namespace=namespace, **{field: value})
        return found if before is None else found.filter(**{f"{made}__lte": before})

    def count(namespace: Namespace, field: str, value: str, before: Any = None) -> int:
        return rows(namespace, field, value, before).count()

    def erase(namespace: Namespace, field: str, value: str, before: Any = None) -> int:
        return rows(namespace, field, value, before).delete()[0]

    def values(namespace: Namespace, field: str) -> Iterable[str]:
        if field not in fields:
            return []
        return (model._default_manager.filter(namespace=namespace).exclude(**{field: ""})
                .values_list(field, flat=True).distinct().iterator())

    return {"subject_count": count, "subject_erase": erase, "subject_values": values}
