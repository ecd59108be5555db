"""``apps.core.rows_by_pk``: the rows ``in_bulk`` gives, field by field and type by type,
on each database the suite runs on (SQLite here, PostgreSQL in the scaled run): every
column filled (JSON, datetimes, foreign keys, sealed text and metadata of an encrypted
namespace), keys given as strings or UUIDs, repeated, missing, and more than one
statement's worth."""

from __future__ import annotations

import gc
import threading
import uuid
import weakref
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, models
from django.test.utils import CaptureQueriesContext, isolate_apps
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core import rows_by_pk as module
from apps.core.rows_by_pk import rows_by_pk
from apps.gateway.models import NamespaceGatewaySettings
from apps.memories import sealing
from apps.memories.models import Memory, PlainVector
from apps.tenancy.models import ApiKey, Namespace

pytestmark = pytest.mark.django_db


def _same(expected: dict, got: dict, model) -> None:
    assert got.keys() == expected.keys()
    for pk, row in expected.items():
        other = got[pk]
        assert type(other) is model and other._state.adding is False and other._state.db == "default"
        for field in model._meta.concrete_fields:
            mine, theirs = getattr(other, field.attname), getattr(row, field.attname)
            assert type(mine) is type(theirs), field.attname
            assert mine == theirs, field.attname


def _filled(stored, agent) -> list[str]:
    """Memories with every optional column set, one pointing at another."""
    now = timezone.now()
    first = stored("Dana keeps the staging VPN token in the blue drawer", tags=["ops", "vpn"],
                   metadata={"ticket": 4417, "nested": {"a": [1, 2]}}, session_id="s-1",
                   importance=0.9, occurred_at=(now - timedelta(days=3)).isoformat(),
                   valid_from=(now - timedelta(days=1)).isoformat(),
                   valid_until=(now + timedelta(days=9)).isoformat(),
                   expires_at=(now + timedelta(days=30)).isoformat())
    second = stored("Yes, and the spare one is in the safe", session_id="s-1")
    Memory.objects.filter(pk=second["id"]).update(
        kind="event", role="user", event_type="message",
        near_duplicate_of_id=first["id"], superseded_by_id=first["id"], superseded_at=now,
        last_recalled_at=now, access_count=3)
    return [first["id"], second["id"], stored("plain")["id"]]


def test_every_column_is_what_in_bulk_gives(stored, agent):
    ids = _filled(stored, agent)
    assert Memory.objects.get(pk=ids[1]).context_memory_id is not None  # the FK is filled
    _same(Memory.objects.in_bulk(ids), rows_by_pk(Memory, ids), Memory)


def test_keys_as_strings_or_uuids_repeated_or_missing(stored, agent):
    ids = _filled(stored, agent)
    asked = [ids[0], uuid.UUID(ids[1]), ids[0].upper(), str(uuid.uuid4()), ids[2]]
    got = rows_by_pk(Memory, asked)
    assert set(got) == {uuid.UUID(i) for i in ids}  # keys are UUIDs, the unknown one left out
    _same(Memory.objects.in_bulk(ids), got, Memory)
    assert rows_by_pk(Memory, []) == {}
    assert rows_by_pk(Memory, [uuid.uuid4()]) == {}


def test_sealed_columns_stay_sealed_like_the_orm_reads_them(vault_agent):
    response = vault_agent.post("/api/v1/memories", {
        "content": "the vault's locker code is 4417", "metadata": {"owner": "dana"}})
    assert response.status_code == 201, response.content
    pk = response.json()["id"]
    got = rows_by_pk(Memory, [pk])[uuid.UUID(pk)]
    with connection.cursor() as cursor:  # the column holds ciphertext
        cursor.execute("SELECT content FROM memories_memory WHERE id = %s",
                       [Memory._meta.pk.get_db_prep_value(uuid.UUID(pk), connection)])
        assert "4417" not in cursor.fetchone()[0]
    assert isinstance(got.__dict__["content"], sealing.SealedValue)
    assert got.content == "the vault's locker code is 4417"  # opened on access, as the ORM's
    assert got.metadata == {"owner": "dana"}
    _same(Memory.objects.in_bulk([pk]), {got.pk: got}, Memory)


def test_more_keys_than_one_statement_takes(monkeypatch, stored):
    ids = [stored(f"memory number {i}")["id"] for i in range(7)]
    monkeypatch.setattr(module, "CHUNK", 3)
    with CaptureQueriesContext(connection) as queries:
        got = rows_by_pk(Memory, [*ids, str(uuid.uuid4())])
    assert len(queries) == 3  # 8 keys, 3 per statement
    _same(Memory.objects.in_bulk(ids), got, Memory)


def test_other_models_and_keys_not_called_id(alpha, beta, agent, stored):
    keys = list(ApiKey.objects.values_list("pk", flat=True))
    assert keys
    _same(Namespace.objects.in_bulk([alpha.pk, beta.pk]),
          rows_by_pk(Namespace, [alpha.pk, str(beta.pk), 10**9]), Namespace)
    _same(ApiKey.objects.in_bulk(keys), rows_by_pk(ApiKey, keys), ApiKey)
    # a proxy reads its concrete model's table
    _same(NamespaceGatewaySettings.objects.in_bulk([alpha.pk]),
          rows_by_pk(NamespaceGatewaySettings, [alpha.pk]), NamespaceGatewaySettings)
    # the audit log's key is ``seq``; a plain vector's is its memory (a one-to-one, attname
    # memory_id), with a binary column
    seqs = list(AuditEntry.objects.values_list("seq", flat=True)[:5])
    assert seqs
    _same(AuditEntry.objects.in_bulk(seqs), rows_by_pk(AuditEntry, seqs), AuditEntry)
    memory = Memory.objects.get(pk=stored("with a plain vector")["id"])
    PlainVector.objects.create(memory=memory, content_hash=memory.content_hash, model="m",
                               vector=b"\x00\x01\x02")
    got = rows_by_pk(PlainVector, [memory.pk])
    _same(PlainVector.objects.in_bulk([memory.pk]), got, PlainVector)
    assert bytes(got[memory.pk].vector) == b"\x00\x01\x02"


def test_no_key_and_bad_keys_as_in_bulk(stored):
    pk = stored("one")["id"]
    assert rows_by_pk(Memory, [None]) == Memory.objects.in_bulk([None]) == {}
    assert set(rows_by_pk(Memory, [None, pk])) == set(Memory.objects.in_bulk([None, pk]))
    for bad in ("nope", object()):
        with pytest.raises(ValidationError):
            Memory.objects.in_bulk([bad])
        with pytest.raises(ValidationError):
            rows_by_pk(Memory, [bad])


@isolate_apps("apps.core")
def test_models_whose_rows_span_tables_are_refused():
    class Base(models.Model):  # noqa: DJ008 - never shown
        class Meta:
            app_label = "core"

    class Child(Base):  # noqa: DJ008
        class Meta:
            app_label = "core"

    with pytest.raises(TypeError, match="parent table"):
        rows_by_pk(Child, [1])


@pytest.mark.django_db(transaction=True)
def test_the_statement_kept_holds_no_thread_s_connection(stored):
    """The plan is kept for the process, its converters called with each caller's own
    connection: a worker thread that read rows and ended leaves no connection behind."""
    pk = stored("read from a worker thread")["id"]
    module._plans.clear()
    seen: dict = {}

    def worker():
        seen["rows"] = rows_by_pk(Memory, [pk])
        seen["wrapper"] = weakref.ref(connections["default"])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    gc.collect()
    assert uuid.UUID(pk) in seen["rows"]
    assert seen["wrapper"]() is None  # the thread's connection went with it
    got = rows_by_pk(Memory, [pk])[uuid.UUID(pk)]  # this thread, the plan built there
    assert got.created_at == seen["rows"][uuid.UUID(pk)].created_at
    assert got.created_at.tzinfo is not None


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's EXPLAIN QUERY PLAN wording")
def test_the_statement_seeks_the_primary_key(stored):
    ids = [stored(f"memory number {i}")["id"] for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        rows_by_pk(Memory, ids)
    (statement,) = [q["sql"] for q in queries.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + statement.split(" IN (")[0] + " IN (%s, %s, %s)",
                       [Memory._meta.pk.get_db_prep_value(uuid.UUID(i), connection) for i in ids])
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "SEARCH" in plan and ("PRIMARY KEY" in plan or "sqlite_autoindex" in plan), plan
    assert "SCAN" not in plan, plan
