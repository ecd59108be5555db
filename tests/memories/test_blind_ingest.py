"""An encrypted namespace's batch ingest, made cheaper without changing what it stores.

The write path gives ``lexical.add`` the memories it just saved, so their blind tokens are
made from the instances' text (not read back and opened again), each term blinded once
per batch; ``SealedQuerySet.bulk_create`` asks the key store once per namespace, not once
per sealed value. What the index holds must be exactly what a rebuild from the table
(the rows read back through the ORM) makes of it.

No vector is looked at: the memories are embedded by the model-free hash embedder
(tests/helpers/hash_embedder.py).
"""

from __future__ import annotations

import pytest
from django.db import connection

from apps.core import namespace_keys
from apps.core.roles import Role
from apps.memories import blind_tokens, lexical
from apps.memories.models import Memory
from bench.corpus import generate_memories
from tests.helpers.callers import make_caller
from tests.helpers.hash_embedder import use_distinct_hash_embedder

#: About the FTS5 tables: every namespace gets its table (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("keyword_tables")


def _ingest(namespace, count: int = 120) -> None:
    caller = make_caller(Role.AGENT, namespace, "agent-ingest")
    items = [{**m, "session_id": f"s{i % 5}"} for i, m in enumerate(generate_memories(count, seed=21))]
    for start in range(0, count, 60):
        response = caller.post("/api/v1/memories/batch", {"memories": items[start:start + 60]})
        assert response.status_code == 201, response.content


def _index_rows(namespace_id: int) -> set[tuple]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"SELECT memory_id, content, context, context_id FROM "
                           f"{lexical.fts_table(namespace_id)}")
        else:
            cursor.execute("SELECT id, blind_search::text, context_search::text FROM memories_memory "
                           "WHERE namespace_id = %s", [namespace_id])
        return set(cursor.fetchall())


@pytest.fixture(autouse=True)
def _keys(key_store, monkeypatch):
    """The test's own key store (tests/conftest.py), set before the namespace is made;
    the hash embedder."""
    use_distinct_hash_embedder(monkeypatch)
    return key_store


def test_the_written_index_is_what_a_rebuild_makes(vault):
    _ingest(vault)
    assert Memory.objects.filter(namespace=vault, context_memory__isnull=False).count() > 50
    written = _index_rows(vault.pk)
    assert len(written) == Memory.objects.filter(namespace=vault).count()
    lexical.rebuild(vault.pk)  # every row read back through the ORM and opened
    assert _index_rows(vault.pk) == written


def test_a_batch_asks_the_key_store_once_per_namespace_for_its_seals(vault, monkeypatch):
    _ingest(vault, 10)  # keys unwrapped, namespace known encrypted
    asked = []
    real = namespace_keys.data_key
    monkeypatch.setattr(namespace_keys, "data_key",
                        lambda *args, **kwargs: asked.append(args) or real(*args, **kwargs))
    _ingest(vault, 120)
    # the keyed content hash asks once per memory (120), the rest (blind-token keys, the
    # sessions' previous memories opened) a few per batch; one look-up per sealed value
    # (content and metadata: 240) would be far above
    assert len(asked) < 120 + 60, len(asked)


def test_tokens_from_the_instances_are_those_of_the_rows_read_back(vault):
    _ingest(vault, 40)
    memories = list(Memory.objects.filter(namespace=vault).select_related("context_memory"))
    assert any(m.context_memory_id for m in memories)
    ids = [m.pk for m in memories]
    assert (sorted(blind_tokens.blinded_rows(vault.pk, ids, memories))
            == sorted(blind_tokens.blinded_rows(vault.pk, ids)))
    plain_of = {m.pk.hex: m.content for m in memories}
    assert all(content == plain_of[pk] for pk, content, _, _ in blind_tokens.written_plaintexts(memories))
