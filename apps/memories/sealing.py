"""An encrypted namespace's memory text, sealed where it meets the database.

Issue 23 (docs/encryption.md): in a namespace created with ``--encrypted`` a memory's
``content`` and every version's ``changes`` (the before and after of each edit) are
stored as AES-256-GCM ciphertext under the namespace's data key
(apps/core/namespace_keys.py), with associated data naming the value's place — table,
column, row and namespace — so a ciphertext copied to another row or tenant does not
open there.

Why in the model fields and not in each service: every door writes through the ORM, and
the fields are the one place every write and every read passes. A field seals in
``pre_save`` (which ``save``, ``bulk_create`` and, through ``MemoryQuerySet.bulk_update``,
``bulk_update`` call); the value on the instance stays plaintext, so the caller's object
is unchanged. Reading leaves a :class:`SealedValue` from the database until the
attribute is first read, then opens it with the row's own place: rows whose text is never
read cost no decryption, and a ``values_list("content")`` (which bypasses the instance)
gets the marker, not a string — code that forgets to open fails loudly instead of
handing out ciphertext.

What fails closed: a missing, shredded or unwrappable key raises
:class:`~apps.core.key_providers.KeyUnavailable`; a changed or moved ciphertext raises
:class:`~apps.core.envelope.Undecryptable`. Both answer 503 at the API
(apps/core/errors.py), never garbage and never plaintext in place of the ciphertext.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.query_utils import DeferredAttribute

from apps.core import envelope, namespace_keys

#: How long a "not encrypted" answer about a namespace id is trusted (an encrypted one
#: is for good: the flag is never turned off).
_PLAIN_TTL_SECONDS = 5.0
_encrypted: dict[int, bool] = {}
_plain_until: dict[int, float] = {}
_lock = threading.Lock()


class SealedValue:
    """Ciphertext as read from the database, not yet opened (its row opens it)."""

    __slots__ = ("stored",)

    def __init__(self, stored: str) -> None:
        self.stored = stored

    def __repr__(self) -> str:
        return "<sealed>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedValue) and other.stored == self.stored

    def __hash__(self) -> int:
        return hash(self.stored)


def namespace_encrypted(namespace_id: int | None, namespace: Any = None) -> bool:
    """Whether the namespace seals its memories.

    A loaded namespace that says "encrypted" is believed at once; one that says "plain" is
    not: it may have been loaded before ``encrypt_namespace`` turned the flag on (a
    timeline build holds its namespace for minutes), so the answer then comes from this
    process's record, else the database (a "plain" answer trusted for
    ``_PLAIN_TTL_SECONDS``, which ``encrypt_namespace`` waits out before its sweep)."""
    if namespace_id is None:
        return False
    if namespace is not None and getattr(namespace, "pk", None) == namespace_id \
            and getattr(namespace, "encrypted", False):
        with _lock:
            _encrypted[namespace_id] = True
        return True
    with _lock:
        if _encrypted.get(namespace_id) or _plain_until.get(namespace_id, 0) > time.monotonic():
            return bool(_encrypted.get(namespace_id))
    from apps.tenancy.models import Namespace

    flag = bool(Namespace.objects.filter(pk=namespace_id, encrypted=True).exists())
    with _lock:
        if flag:
            _encrypted[namespace_id] = True
        else:
            _plain_until[namespace_id] = time.monotonic() + _PLAIN_TTL_SECONDS
    return flag


def place(table: str, column: str, row: str, namespace_id: int) -> bytes:
    """The associated data binding a ciphertext to its table, column, row and namespace."""
    return f"memoryweb:{table}:{column}:{row}:{namespace_id}".encode()


def seal_text(namespace_id: int, where: bytes, text: str) -> str:
    held = _held_keys.get()
    if held is None:
        version, key = namespace_keys.data_key(namespace_id)
    else:  # inside one bulk write: the key store is asked once per namespace
        if namespace_id not in held:
            held[namespace_id] = namespace_keys.data_key(namespace_id)
        version, key = held[namespace_id]
    return envelope.seal_text(key, version, text, where)


def open_text(namespace_id: int, where: bytes, stored: str) -> str:
    sealed = envelope.sealed_bytes(stored)  # decoded once: the version, then the value
    _, key = namespace_keys.data_key(namespace_id, envelope.version_of(sealed))
    return envelope.open_sealed(key, sealed, where).decode()


class Outgoing(SealedValue):
    """Ciphertext on its way to the database (``MemoryQuerySet.bulk_update`` puts it on the
    instance for the write): not opened when read, so the write stores it as it is."""

    __slots__ = ()


class _SealedAttribute(DeferredAttribute):
    """Opens the field's value the first time it is read from an instance.

    A data descriptor (it has ``__set__``): Django's DeferredAttribute alone is consulted
    only while the value is missing from the instance's ``__dict__``, so a loaded value
    would be read past it, still sealed."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, SealedValue) and not isinstance(value, Outgoing):
            value = self.field.open_for(instance, value)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class _Sealing:
    """What the sealed fields share: where a row's value is, and how it is sealed."""

    descriptor_class = _SealedAttribute
    attname: str

    def row_place(self, instance: Any) -> tuple[int | None, Any, str]:
        """``(namespace id, loaded namespace or None, row key)`` of the instance."""
        raise NotImplementedError

    def where(self, instance: Any) -> tuple[int, bytes] | None:
        namespace_id, namespace, row = self.row_place(instance)
        if not namespace_encrypted(namespace_id, namespace):
            return None
        return namespace_id, place(self.model._meta.db_table, self.column, row, namespace_id)

    def encode(self, value: Any) -> str:
        return value

    def decode(self, text: str) -> Any:
        return text

    def open_for(self, instance: Any, value: SealedValue) -> Any:
        namespace_id, namespace, row = self.row_place(instance)
        if namespace_id is None:
            raise envelope.Undecryptable(f"a sealed {self.model.__name__}.{self.attname} "
                                         "without a namespace to open it")
        if not namespace_encrypted(namespace_id, namespace):
            # A plain namespace never holds ciphertext (the flag is never turned off):
            # text that merely looks sealed, stored before writes refused it, is text.
            return value.stored
        where = place(self.model._meta.db_table, self.column, row, namespace_id)
        return self.decode(open_text(namespace_id, where, value.stored))

    def sealed_for_save(self, instance: Any) -> Any:
        """The value to store for the instance: sealed when its namespace is encrypted."""
        value = instance.__dict__.get(self.attname)
        if isinstance(value, SealedValue):
            return value  # read and never opened: stored as it was
        where = self.where(instance)
        if where is None and envelope.is_sealed_text(value):
            from apps.core.errors import InvalidInput

            raise InvalidInput(f"{self.attname} must not start with "
                               f"{envelope.TEXT_PREFIX!r}: that prefix marks ciphertext.",
                               field=self.attname)
        if where is None or value is None:
            return value
        return SealedValue(seal_text(where[0], where[1], self.encode(value)))

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        return self.sealed_for_save(model_instance)


def _cached_namespace(instance: Any) -> Any:
    return instance._state.fields_cache.get("namespace")


class SealedTextField(_Sealing, models.TextField):
    """A memory's text column (``Memory.content``): the row is the memory's id."""

    def row_place(self, instance: Any) -> tuple[int | None, Any, str]:
        return instance.namespace_id, _cached_namespace(instance), str(instance.pk)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return SealedValue(value) if envelope.is_sealed_text(value) else value

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, SealedValue):
            return value.stored
        return super().get_prep_value(value)


class _SealedJSON(_Sealing, models.JSONField):
    """A JSON column sealed whole (its JSON text is the plaintext)."""

    def encode(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def decode(self, text: str) -> Any:
        return json.loads(text)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        decoded = super().from_db_value(value, expression, connection)
        return SealedValue(decoded) if envelope.is_sealed_text(decoded) else decoded

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, SealedValue):
            value = value.stored
        return super().get_prep_value(value)


class SealedMetadataField(_SealedJSON):
    """A memory's ``metadata``: sealed whole, the row is the memory's id. Its scalar values'
    blind tokens go to :class:`BlindMetadataField` so equality filters, the GDPR subject
    lookup and Chroma's filter fields still work without the values."""

    def row_place(self, instance: Any) -> tuple[int | None, Any, str]:
        return instance.namespace_id, _cached_namespace(instance), str(instance.pk)


class SealedVersionChanges(_SealedJSON):
    """A version's ``changes``: the row is the memory and the version number (known
    before the insert, unlike the row's own id); the namespace is the memory's."""

    def row_place(self, instance: Any) -> tuple[int | None, Any, str]:
        memory = instance._state.fields_cache.get("memory")
        if memory is None:
            from apps.memories.models import Memory

            memory = Memory.objects.only("id", "namespace_id").filter(pk=instance.memory_id).first()
        namespace_id = memory.namespace_id if memory is not None else None
        namespace = _cached_namespace(memory) if memory is not None else None
        return namespace_id, namespace, f"{instance.memory_id}:{instance.version}"


#: The purpose key of metadata values' blind tokens.
METADATA_PURPOSE = "metadata-values"


def _canonical(value: Any) -> str:
    """One text per value as the JSON filter compares them (5 and 5.0 are equal)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def blind_value(namespace_id: int, value: Any, key: bytes | None = None) -> str:
    """A metadata value's blind token in the namespace: an HMAC, equal for equal values."""
    key = key or namespace_keys.subkey(namespace_id, METADATA_PURPOSE)
    return "b" + hmac.new(key, _canonical(value).encode(), hashlib.sha256).hexdigest()[:40]


def blind_metadata(namespace_id: int, metadata: Any) -> dict[str, str]:
    """Each scalar metadata value's blind token, by key (keys stay readable: they are the
    schema a filter names, not the person's data)."""
    if not isinstance(metadata, dict) or not metadata:
        return {}
    key = namespace_keys.subkey(namespace_id, METADATA_PURPOSE)
    return {name: blind_value(namespace_id, value, key) for name, value in metadata.items()
            if value is None or isinstance(value, (str, int, float, bool))}


class BlindMetadataField(models.JSONField):
    """``metadata_blind``: in an encrypted namespace, the blind token of each scalar
    metadata value (NULL elsewhere), computed from the instance's metadata on every save."""

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        namespace_id = model_instance.namespace_id
        if not namespace_encrypted(namespace_id, _cached_namespace(model_instance)):
            # Cleared on the instance too: bulk_update writes the attribute, so tokens of
            # an encrypted namespace must not outlive a move into a plain one.
            setattr(model_instance, self.attname, None)
            return None
        value = blind_metadata(namespace_id, model_instance.metadata)
        setattr(model_instance, self.attname, value)
        return value


def blind_match(lookup: str, values: Any, among: Any = None) -> tuple[list[int], Q]:
    """``(encrypted namespace ids, condition)``: in each encrypted namespace (of ``among``:
    ids or a queryset of them; all when None), the rows whose ``lookup`` (a metadata
    token, e.g. ``metadata_blind__subject_id__in``) is the blind token of one of
    ``values``. The metadata filters and the subject lookup share it; a namespace whose
    key is gone raises (fail closed), never matches nothing."""
    from apps.tenancy.models import Namespace

    found = Namespace.objects.filter(encrypted=True)
    if among is not None:
        found = found.filter(pk__in=among)
    encrypted = list(found.values_list("pk", flat=True))
    match = Q()
    for namespace_id in encrypted:
        key = namespace_keys.subkey(namespace_id, METADATA_PURPOSE)
        tokens = {blind_value(namespace_id, value, key) for value in values}
        match |= Q(namespace_id=namespace_id, **{lookup: tokens})
    return encrypted, match


def metadata_filter(namespace: Any, metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(column, values)`` of a recall or delete filter's metadata as this namespace stores
    it: ``metadata`` and the values themselves, or ``metadata_blind`` and their blind tokens
    where the namespace is encrypted (SQL and Chroma). No metadata filter: no lookup."""
    if not metadata or not namespace_encrypted(namespace.pk, namespace):
        return "metadata", metadata
    key = namespace_keys.subkey(namespace.pk, METADATA_PURPOSE)
    return "metadata_blind", {name: blind_value(namespace.pk, value, key)
                              for name, value in metadata.items()}


#: Set while SealedQuerySet.bulk_update runs: its values are sealed already.
_in_bulk_update: contextvars.ContextVar[bool] = contextvars.ContextVar("sealed_bulk", default=False)
#: Set while SealedQuerySet.bulk_create seals its rows: the current data key of each
#: namespace it sealed for, taken from the key store at its first value. Per value, the
#: look-up (a ``stat`` of the key store) was a fifth of an encrypted batch's sealing; a
#: key shredded meanwhile stops the next write, as it stops the next Blinder.
_held_keys: contextvars.ContextVar[dict[int, tuple[int, bytes]] | None] = contextvars.ContextVar(
    "sealed_keys", default=None)


class SealedQuerySet(models.QuerySet):
    """Bulk writes that bypass ``pre_save`` made safe for sealed fields.

    Django's ``bulk_update`` writes ``getattr(obj, field)`` and ``update()`` writes the
    given value, neither through ``pre_save``: here ``bulk_update`` seals each object's
    sealed fields first (a deferred one is loaded and opened, then sealed again), and an
    ``update()`` that sets a sealed field is refused when it would reach a row of an
    encrypted namespace (``namespace_path``: the lookup from this model to its namespace).
    """

    namespace_path = "namespace"

    def bulk_create(self, objs, *args: Any, **kwargs: Any) -> Any:
        keys = _held_keys.set({})  # pre_save seals each row: one key look-up per namespace
        try:
            return super().bulk_create(objs, *args, **kwargs)
        finally:
            _held_keys.reset(keys)

    def bulk_update(self, objs, fields, batch_size=None) -> int:
        objs = list(objs)
        sealed = [self.model._meta.get_field(name) for name in sealed_fields(self.model)
                  if name in fields]
        held: list[tuple[Any, str, Any]] = []
        try:
            for obj in objs:
                for field in sealed:
                    if field.attname not in obj.__dict__:
                        getattr(obj, field.attname)  # deferred: loaded (and opened) first
                    value = outgoing(field, obj)
                    if value is not None:
                        held.append((obj, field.attname, obj.__dict__.get(field.attname)))
                        obj.__dict__[field.attname] = value
            token = _in_bulk_update.set(True)  # Django's bulk_update calls update()
            try:
                return super().bulk_update(objs, fields, batch_size=batch_size)
            finally:
                _in_bulk_update.reset(token)
        finally:
            for obj, attname, value in held:
                obj.__dict__[attname] = value

    def update(self, **kwargs: Any) -> int:
        touched = [name for name in sealed_fields(self.model) if name in kwargs]
        encrypted = {f"{self.namespace_path}__encrypted": True}
        if touched and not _in_bulk_update.get() and self.filter(**encrypted).exists():
            raise ValueError(f"update() of {', '.join(touched)} would store an encrypted "
                             "namespace's text in clear: save the rows (save, bulk_update).")
        return super().update(**kwargs)


def sealed_fields(model: type[models.Model]) -> list[str]:
    """The model's sealed fields' names."""
    return [f.name for f in model._meta.concrete_fields if isinstance(f, _Sealing)]


def outgoing(field: Any, instance: Any) -> Outgoing | None:
    """The instance's value of a sealed field as ciphertext ready to write, or None when
    it is stored as it is (its namespace is not encrypted, or it is empty)."""
    value = field.sealed_for_save(instance)
    return Outgoing(value.stored) if isinstance(value, SealedValue) else None


def texts(memories: Any, chunk_size: int = 2000) -> Iterator[tuple[Any, str]]:
    """``(pk, content)`` of each memory of the queryset, opened where sealed: the
    replacement for ``values_list("pk", "content")``, which yields ciphertext markers."""
    for memory in memories.only("pk", "namespace_id", "content").iterator(chunk_size=chunk_size):
        yield memory.pk, memory.content


def forget() -> None:
    """Forget which namespace ids were seen encrypted (tests, where ids start over)."""
    with _lock:
        _encrypted.clear()
        _plain_until.clear()


# --- the other stores of an encrypted namespace ------------------------------------------
# Issue 23's "every derived store is covered": the gateway's queued exchanges, learned facts
# and traces, erasure requests' selectors, the timeline's summaries and excerpts. Their
# rows declare where they are (which attribute is the row, which the namespace) instead of
# Memory's fixed ``pk``/``namespace_id``.


def _dotted(instance: Any, path: str) -> Any:
    """``instance.a.b``: each hop through the instance's cached relation when loaded."""
    value = instance
    for name in path.split("."):
        if value is None:
            return None
        value = getattr(value, name)
    return value


class _DeclaredPlace(_Sealing):
    """A sealed field whose row and namespace are named by the model.

    ``row``: the attribute (dotted path allowed) that names the row *before* the insert — a
    UUID primary key set by its default, or a UUID column added for the purpose where the
    key is an autoincrement integer (which ``pre_save`` does not know yet). ``namespace``:
    the attribute holding the namespace id (``namespace_id``; ``node.namespace_id`` through
    a relation). ``when_gone``: what a sealed value reads as once its row has lost its
    namespace (a deleted namespace's erasure request: ``SET_NULL``, and the key was
    shredded with it) — a fixed, plain value saying so, rather than a 503 on every list
    that shows the row; None raises :class:`~apps.core.key_providers.KeyUnavailable`."""

    def __init__(self, *args: Any, row: str = "pk", namespace: str = "namespace_id",
                 when_gone: Any = None, **kwargs: Any) -> None:
        self.row_attr = row
        self.namespace_attr = namespace
        self.when_gone = when_gone
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.row_attr != "pk":
            kwargs["row"] = self.row_attr
        if self.namespace_attr != "namespace_id":
            kwargs["namespace"] = self.namespace_attr
        if self.when_gone is not None:
            kwargs["when_gone"] = self.when_gone
        return name, path, args, kwargs

    def row_place(self, instance: Any) -> tuple[int | None, Any, str]:
        namespace_id = _dotted(instance, self.namespace_attr)
        owner = _dotted(instance, self.namespace_attr.rpartition(".")[0]) \
            if "." in self.namespace_attr else instance
        namespace = _cached_namespace(owner) if owner is not None else None
        return namespace_id, namespace, str(_dotted(instance, self.row_attr))

    def open_for(self, instance: Any, value: SealedValue) -> Any:
        if self.row_place(instance)[0] is None:
            if self.when_gone is not None:
                return self.when_gone
            from apps.core.key_providers import KeyUnavailable

            raise KeyUnavailable(f"a sealed {self.model.__name__}.{self.attname} whose "
                                 "namespace was deleted: its key was destroyed with it")
        return super().open_for(instance, value)


class SealedText(_DeclaredPlace, SealedTextField):
    """A text column sealed in an encrypted namespace, its row declared by the model."""


class SealedJSON(_DeclaredPlace, SealedVersionChanges):
    """A JSON column sealed (as one ciphertext of its canonical JSON) in an encrypted
    namespace, its row declared by the model. ``None`` stays a SQL NULL."""


def keyed_hash(text: str, namespace: Any, purpose: str) -> str:
    """SHA-256 of ``text``, or in an encrypted namespace an HMAC-SHA256 under the
    namespace's ``purpose`` key (derived from its data key, so shredded with it): a plain
    hash of a short text gives it away to a dictionary. ``namespace``: the model or its id."""
    namespace_id = namespace if isinstance(namespace, int) or namespace is None else namespace.pk
    if namespace_encrypted(namespace_id, None if isinstance(namespace, int) else namespace):
        key = namespace_keys.subkey(namespace_id, purpose)
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def for_update(instance: Any, *names: str) -> dict[str, Any]:
    """``{name: value}`` of the instance's fields as they must be stored — sealed where its
    namespace is encrypted — for a ``QuerySet.update()``, which calls no ``pre_save``:
    ``Model.objects.filter(pk=...).update(**for_update(row, "text"))``."""
    values = {}
    for name in names:
        field = instance._meta.get_field(name)
        value = field.sealed_for_save(instance) if isinstance(field, _Sealing) \
            else getattr(instance, field.attname)
        values[name] = value
    return values
