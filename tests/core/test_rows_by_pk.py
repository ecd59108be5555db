"""``apps.core.rows_by_pk``: the rows ``in_bulk`` gives, field by field and type by type,
on each database the suite runs on (SQLite here, PostgreSQL in the scaled run): every
column filled (JSON, datetimes, foreign keys, sealed text and metadata of an encrypted
namespace), keys given as strings or UUIDs, repeated, missing, and more than one
statement's worth."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core import rows_by_pk as module
from apps.core.rows_by_pk import rows_by_pk
from apps.memories import sealing
from apps.memories.models import Memory
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


def test_other_models_and_integer_keys(alpha, beta, agent):
    keys = list(ApiKey.objects.values_list("pk", flat=True))
    assert keys
    _same(Namespace.objects.in_bulk([alpha.pk, beta.pk]),
          rows_by_pk(Namespace, [alpha.pk, beta.pk, 10**9]), Namespace)
    _same(ApiKey.objects.in_bulk(keys), rows_by_pk(ApiKey, keys), ApiKey)


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
