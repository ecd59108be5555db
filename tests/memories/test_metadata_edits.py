"""An edit that leaves the embedded text alone does not run the embedding model.

Only ``content`` is embedded (indexing._upsert), so a change of tags, kind or metadata
updates the vector index's filter fields and keeps the stored vector. Each test counts
calls of the process-wide embedder: a behaviour, not a timing.
"""

from __future__ import annotations

from apps.audit.models import AuditEntry
from apps.core.roles import Role
from apps.memories import indexing, services
from apps.memories.embeddings import get_embedder
from apps.memories.models import IndexOutbox, MemoryVersion
from apps.memories.vectorstore import TAG_KEY, get_vector_store
from apps.tenancy.principal import Principal
from tests.helpers.vector_index import stored_metadata


def _admin(namespace) -> Principal:
    return Principal(label="key:admin", agent_id="admin", role=Role.ADMIN,
                     namespace_id=namespace.pk, namespace=namespace)


def _store_some(namespace, n: int) -> list:
    agent = Principal(label="key:a", agent_id="a", role=Role.AGENT, namespace_id=namespace.pk,
                      namespace=namespace)
    return [result.memory for result in services.ingest_many(
        agent, [{"content": f"Invoice {i} for the harbour crane repair", "tags": ["old"]}
                for i in range(n)])]


def _recall(namespace, tag: str, mode: str) -> set[str]:
    reader = Principal(label="key:r", agent_id="r", role=Role.READER, namespace_id=namespace.pk,
                       namespace=namespace)
    result = services.recall(reader, {"query": "harbour crane invoice", "k": 20, "mode": mode,
                                      "filters": {"tags": [tag]}})
    return {str(hit.memory.pk) for hit in result.hits}


def _stored_tags(namespace, ids) -> dict[str, frozenset[str]]:
    return {i: frozenset(k[len(TAG_KEY):] for k in meta if k.startswith(TAG_KEY))
            for i, meta in stored_metadata(namespace, ids).items()}


def test_a_tags_only_edit_does_not_embed_and_moves_the_tag_filter(alpha, embed_calls):
    memory = _store_some(alpha, 1)[0]
    before = get_vector_store().embeddings(alpha, [str(memory.pk)])[str(memory.pk)]
    embed_calls.clear()

    edited = services.update(_admin(alpha), memory.pk, {"tags": ["new"], "kind": "procedure"})

    assert embed_calls == []
    assert edited.version == 2 and edited.tags == ["new"]
    assert _stored_tags(alpha, [memory.pk]) == {str(memory.pk): {"new"}}
    after = get_vector_store().embeddings(alpha, [str(memory.pk)])[str(memory.pk)]
    assert (after == before).all()  # the stored vector is kept
    assert IndexOutbox.objects.count() == 0
    assert MemoryVersion.objects.get(memory=memory, version=2).changes["tags"] == {
        "before": ["old"], "after": ["new"]}
    assert AuditEntry.objects.filter(operation="memory.update",
                                     records__record_id=str(memory.pk)).count() == 1
    embed_calls.clear()
    for mode in ("vector", "hybrid"):
        assert str(memory.pk) in _recall(alpha, "new", mode)
        assert str(memory.pk) not in _recall(alpha, "old", mode)


def test_a_content_edit_still_embeds(alpha, embed_calls):
    memory = _store_some(alpha, 1)[0]
    embed_calls.clear()
    services.update(_admin(alpha), memory.pk, {"content": "The crane was repaired twice",
                                                "tags": ["new"]})
    assert embed_calls == [1]


def test_bulk_retag_is_one_batch_without_embedding(alpha, embed_calls):
    memories = _store_some(alpha, 12)
    ids = [m.pk for m in memories]
    embed_calls.clear()

    result = services.retag_many(_admin(alpha), ids, add=["new", "crane"], remove=["old"])

    assert embed_calls == []
    assert len(result.updated) == 12 and result.errors == []
    assert set(_stored_tags(alpha, ids).values()) == {frozenset({"new", "crane"})}
    assert MemoryVersion.objects.filter(memory_id__in=ids, version=2).count() == 12
    assert AuditEntry.objects.filter(operation="memory.update").count() == 12
    assert IndexOutbox.objects.count() == 0
    for mode in ("vector", "hybrid"):
        assert {str(i) for i in ids} <= _recall(alpha, "new", mode)
        assert not _recall(alpha, "old", mode)
    assert embed_calls == [1, 1, 1, 1]  # the four recall queries, nothing else

    again = services.retag_many(_admin(alpha), ids, add=["new"])
    assert again.updated == [] and AuditEntry.objects.filter(operation="memory.update").count() == 12


def test_bulk_kind_change_does_not_embed(alpha, embed_calls):
    ids = [m.pk for m in _store_some(alpha, 5)]
    embed_calls.clear()
    result = services.set_kind_many(_admin(alpha), ids, "procedure")
    assert embed_calls == [] and len(result.updated) == 5
    kinds = stored_metadata(alpha, ids)
    assert len(kinds) == 5 and {meta["kind"] for meta in kinds.values()} == {"procedure"}


def test_bulk_retag_refuses_what_the_caller_may_not_edit(alpha, beta, embed_calls):
    mine, theirs = _store_some(alpha, 1)[0], _store_some(beta, 1)[0]
    result = services.retag_many(_admin(alpha), [mine.pk, theirs.pk], add=["new"])
    assert [m.pk for m in result.updated] == [mine.pk]
    assert result.errors == [(str(theirs.pk), "memory not found.")]
    theirs.refresh_from_db()
    assert theirs.tags == ["old"] and theirs.version == 1


def test_a_metadata_op_left_in_the_outbox_is_replayed_without_embedding(alpha, embed_calls,
                                                                       monkeypatch):
    """Crash safety: the index is down during the edit; the drain later writes the new
    tags, re-using the stored vector."""
    memories = _store_some(alpha, 3)
    ids = [m.pk for m in memories]
    store = get_vector_store()

    def down(*args, **kwargs):
        raise ConnectionError("index down")

    monkeypatch.setattr(store, "update_metadata", down)
    embed_calls.clear()
    services.retag_many(_admin(alpha), ids, add=["new"], remove=["old"])
    rows = list(IndexOutbox.objects.all())
    assert len(rows) == 3 and {r.op for r in rows} == {IndexOutbox.Op.METADATA}
    assert set(_stored_tags(alpha, ids).values()) == {frozenset({"old"})}
    monkeypatch.undo()
    get_embedder()  # the counter is gone with undo: count again
    calls = []
    real = get_embedder().embed
    monkeypatch.setattr(get_embedder(), "embed", lambda texts: calls.append(1) or real(texts))

    report = indexing.drain_outbox()

    assert report.processed == 3 and report.remaining == 0 and calls == []
    assert set(_stored_tags(alpha, ids).values()) == {frozenset({"new"})}


def test_a_metadata_op_for_a_memory_missing_from_the_index_embeds_it(alpha, embed_calls):
    """The index lost the vector (or never had it): the metadata op indexes it in full."""
    memory = _store_some(alpha, 1)[0]
    get_vector_store().delete(alpha, [str(memory.pk)])
    embed_calls.clear()
    services.update(_admin(alpha), memory.pk, {"tags": ["new"]})
    assert embed_calls == [1]
    assert _stored_tags(alpha, [memory.pk]) == {str(memory.pk): {"new"}}


def test_the_dashboards_bulk_retag_does_not_embed(alpha, embed_calls):
    """The admin action goes through the batched service: no embedder call per memory."""
    from tests.helpers.people import person

    ids = [str(m.pk) for m in _store_some(alpha, 6)]
    embed_calls.clear()
    page = person("alice", alpha).post("/admin/memories/memory/", {
        "action": "retag", "_selected_action": ids, "apply": "1", "add": "new", "remove": "old"},
        follow=True)
    assert b"6 memories re-tagged." in page.content
    assert embed_calls == []
    assert set(_stored_tags(alpha, ids).values()) == {frozenset({"new"})}
