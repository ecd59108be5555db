"""Context mixed into a turn's vector, and the plain vectors kept for it
(apps/memories/context.py ``index_vectors``, apps/memories/plain_vectors.py).

A session turn is indexed as ``normalize(e(content) + alpha * e(previous turn))``; each
content is embedded once, at its own write, and kept: the next turn and consolidation read
it instead of running the model again. The rows are a cache: never used once the content
or the model changed, gone with their memory."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from apps.memories import context, plain_vectors
from apps.memories.embeddings import get_embedder
from apps.memories.models import Memory, PlainVector
from apps.memories.vectorstore import get_vector_store

FIRST = "We met at the harbour café on Tuesday."
SECOND = "Yes, and the espresso there was excellent."
THIRD = "I would go back for the pastries alone."


class CountingEmbedder:
    """Wraps the real model and records every text it is asked to embed."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []
        self.name, self.dimension = inner.name, inner.dimension

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


@pytest.fixture
def counting(monkeypatch):
    embedder = get_embedder()
    wrapper = CountingEmbedder(embedder.inner)
    monkeypatch.setattr(embedder, "inner", wrapper)
    return wrapper


def _e(text: str) -> np.ndarray:
    return get_embedder().embed([text])[0]


def _mixed(content: str, before: str) -> np.ndarray:
    vector = _e(content) + 0.4 * _e(before)
    return vector / np.linalg.norm(vector)


def _indexed(namespace, memory_id: str) -> np.ndarray:
    return get_vector_store().embeddings(namespace, [memory_id])[memory_id]


def _batch(agent, *contents: str, session: str = "s1") -> list[str]:
    response = agent.post("/api/v1/memories/batch", {"memories": [
        {"content": content, "session_id": session} for content in contents]})
    assert response.status_code == 201, response.content
    return [item["id"] for item in response.json()["results"]]


def _kept(memory_id: str) -> np.ndarray:
    row = PlainVector.objects.get(memory_id=memory_id)
    return np.frombuffer(bytes(row.vector), dtype="<f4")


@pytest.mark.django_db(transaction=True)
def test_a_turn_is_indexed_as_its_vector_mixed_with_the_turn_before(agent, alpha):
    first, second = _batch(agent, FIRST, SECOND)
    np.testing.assert_allclose(_indexed(alpha, first), _e(FIRST), atol=1e-5)
    np.testing.assert_allclose(_indexed(alpha, second), _mixed(SECOND, FIRST), atol=1e-5)
    # Each content embedded alone is kept, for its own content hash and the model.
    for memory_id, text in ((first, FIRST), (second, SECOND)):
        row = PlainVector.objects.get(memory_id=memory_id)
        assert row.content_hash == Memory.objects.get(pk=memory_id).content_hash
        assert row.model == get_embedder().name
        np.testing.assert_allclose(_kept(memory_id), _e(text), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_the_next_turn_reads_the_kept_vector_instead_of_embedding_the_turn_before(
        agent, alpha, counting):
    _, second = _batch(agent, FIRST, SECOND)
    assert sorted(counting.texts) == sorted([FIRST, SECOND])  # one text a turn, not two
    counting.texts.clear()
    (third,) = _batch(agent, THIRD)
    assert counting.texts == [THIRD]
    assert str(Memory.objects.get(pk=third).context_memory_id) == second
    np.testing.assert_allclose(_indexed(alpha, third), _mixed(THIRD, SECOND), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_a_missing_or_stale_row_is_embedded_again_never_used(agent, alpha, counting):
    first, second = _batch(agent, FIRST, SECOND)
    # A row for other content (as an edit by a path that forgot it would leave) ...
    PlainVector.objects.filter(memory_id=second).update(
        content_hash="0" * 64, vector=np.ones(get_embedder().dimension, dtype="<f4").tobytes())
    # ... and one of another model are ignored; the memory before has none at all.
    PlainVector.objects.filter(memory_id=first).delete()
    counting.texts.clear()
    vectors = plain_vectors.of(list(Memory.objects.filter(pk__in=[first, second])
                                    .order_by("created_at")))
    assert sorted(counting.texts) == sorted([FIRST, SECOND])
    np.testing.assert_allclose(vectors, np.stack([_e(FIRST), _e(SECOND)]), atol=1e-5)
    PlainVector.objects.filter(memory_id=second).update(model="another-model")
    assert plain_vectors.stored({Memory.objects.get(pk=second).pk:
                                 Memory.objects.get(pk=second).content_hash}) == {}


@pytest.mark.django_db(transaction=True)
def test_an_edit_keeps_the_new_contents_vector_and_remixes_the_next_turn(agent, alpha, team_admin):
    _, second, third = _batch(agent, FIRST, SECOND, THIRD)
    edited = "Yes, though the espresso there was bitter."
    response = team_admin.patch(f"/api/v1/memories/{second}", {"content": edited})
    assert response.status_code == 200, response.content
    row = PlainVector.objects.get(memory_id=second)
    assert row.content_hash == Memory.objects.get(pk=second).content_hash
    np.testing.assert_allclose(_kept(second), _e(edited), atol=1e-5)
    np.testing.assert_allclose(_indexed(alpha, second), _mixed(edited, FIRST), atol=1e-5)
    np.testing.assert_allclose(_indexed(alpha, third), _mixed(THIRD, edited), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_rows_go_with_their_memory(agent, alpha, team_admin):
    first, second = _batch(agent, FIRST, SECOND)
    assert team_admin.delete(f"/api/v1/memories/{first}").status_code == 204
    assert not PlainVector.objects.filter(memory_id=first).exists()
    # The next turn lost its context: indexed as itself alone, from its kept vector.
    np.testing.assert_allclose(_indexed(alpha, second), _e(SECOND), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_memories_without_a_session_keep_no_row(agent, alpha):
    response = agent.post("/api/v1/memories", {"content": FIRST})
    assert response.status_code == 201
    assert not PlainVector.objects.exists()
    np.testing.assert_allclose(_indexed(alpha, response.json()["id"]), _e(FIRST), atol=1e-5)


@pytest.mark.django_db(transaction=True)
@override_settings(MEMORYWEB_CONTEXT_EMBEDDING="text")
def test_text_mode_embeds_both_texts_together_and_keeps_nothing(agent, alpha):
    _, second = _batch(agent, FIRST, SECOND)
    np.testing.assert_allclose(_indexed(alpha, second), _e(context.index_text(SECOND, FIRST)),
                               atol=1e-5)
    assert not PlainVector.objects.exists()


@pytest.mark.django_db(transaction=True)
@override_settings(MEMORYWEB_CONTEXT_MIX_WEIGHT=0.0)
def test_a_mix_weight_of_zero_leaves_the_turn_before_out(agent, alpha):
    _, second = _batch(agent, FIRST, SECOND)
    np.testing.assert_allclose(_indexed(alpha, second), _e(SECOND), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_reindex_drops_rows_of_another_model_or_older_content(agent, alpha):
    first, second = _batch(agent, FIRST, SECOND)
    PlainVector.objects.filter(memory_id=first).update(model="another-model")
    PlainVector.objects.filter(memory_id=second).update(content_hash="0" * 64)
    assert plain_vectors.drop_stale(alpha.pk) == 2
    assert not PlainVector.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_consolidation_compares_kept_vectors_without_running_the_model_on_contents(
        agent, alpha, team_admin, counting):
    turns = [FIRST, SECOND, "Yes, and the espresso there was really excellent.", THIRD]
    _batch(agent, *turns)
    counting.texts.clear()
    url = f"/api/v1/namespaces/{alpha.slug}/consolidate"
    response = team_admin.post(url, {"dry_run": True})
    assert response.status_code == 200, response.content
    assert not set(counting.texts) & set(turns)
    members = [set(p["members"]) for p in response.json()["proposals"]]
    assert len(members) == 1 and len(members[0]) == 2  # the two espresso turns


@pytest.mark.django_db(transaction=True)
@override_settings(MEMORYWEB_CONTEXT_EMBEDDING="text")
def test_consolidation_keeps_the_vectors_it_embeds_for_its_next_run(agent, alpha, team_admin,
                                                                   counting):
    turns = [FIRST, SECOND, THIRD]
    _batch(agent, *turns)
    url = f"/api/v1/namespaces/{alpha.slug}/consolidate"
    counting.texts.clear()
    assert team_admin.post(url, {"dry_run": True}).status_code == 200
    assert sorted(set(counting.texts) & set(turns)) == sorted([SECOND, THIRD])  # with context
    assert PlainVector.objects.count() == 2
    counting.texts.clear()
    assert team_admin.post(url, {"dry_run": True}).status_code == 200
    assert not set(counting.texts) & set(turns)


@pytest.mark.django_db(transaction=True)
def test_consolidation_reads_the_kept_row_not_the_mixed_index_vector(agent, alpha, team_admin):
    paraphrase = "Yes, and the espresso there was really excellent."
    ids = _batch(agent, FIRST, SECOND, paraphrase, THIRD)
    # The paraphrase's kept vector now says something else (same hash and model: valid).
    PlainVector.objects.filter(memory_id=ids[2]).update(
        vector=_e("Quarterly tax filings are due in April.").astype("<f4").tobytes())
    response = team_admin.post(f"/api/v1/namespaces/{alpha.slug}/consolidate", {"dry_run": True})
    assert response.status_code == 200, response.content
    assert response.json()["proposals"] == []


@pytest.mark.django_db(transaction=True)
def test_an_edit_deletes_the_old_contents_row_even_when_nothing_replaces_it(
        agent, alpha, team_admin, monkeypatch):
    _, second = _batch(agent, FIRST, SECOND)
    monkeypatch.setattr(plain_vectors, "keep", lambda entries: set())  # keeping fails
    response = team_admin.patch(f"/api/v1/memories/{second}", {"content": "Something else."})
    assert response.status_code == 200, response.content
    assert not PlainVector.objects.filter(memory_id=second).exists()


@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_the_deletion_of_its_context_does_not_mix_the_deleted_turn_in(
        agent, alpha, team_admin, monkeypatch):
    from apps.memories import indexing

    first, second = _batch(agent, FIRST, SECOND)
    edited = "Yes, though the espresso there was bitter."
    embed = indexing.embed_memories

    def embed_then_delete_context(memories):
        vectors = embed(memories)  # mixed with FIRST, as the edit saw it
        assert team_admin.delete(f"/api/v1/memories/{first}").status_code == 204
        return vectors

    monkeypatch.setattr(indexing, "embed_memories", embed_then_delete_context)
    response = team_admin.patch(f"/api/v1/memories/{second}", {"content": edited})
    assert response.status_code == 200, response.content
    assert Memory.objects.get(pk=second).context_memory_id is None
    np.testing.assert_allclose(_indexed(alpha, second), _e(edited), atol=1e-5)


@pytest.mark.django_db(transaction=True)
def test_a_pending_vector_of_other_content_is_never_kept(agent, alpha):
    _, second = _batch(agent, FIRST, SECOND)
    PlainVector.objects.all().delete()
    memory = Memory.objects.get(pk=second)
    setattr(memory, plain_vectors.PENDING, ("another text", _e("another text")))
    assert plain_vectors.save([memory]) == 0
    assert not PlainVector.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_turning_encryption_on_rekeys_the_rows_hashes(agent, alpha):
    import hashlib

    from tests.memories.test_encrypt_namespace import encrypt

    ids = _batch(agent, FIRST, SECOND)
    encrypt("alpha")
    for memory_id, text in zip(ids, (FIRST, SECOND), strict=True):
        memory, row = Memory.objects.get(pk=memory_id), PlainVector.objects.get(memory_id=memory_id)
        assert row.content_hash == memory.content_hash
        assert row.content_hash != hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
        np.testing.assert_allclose(_kept(memory_id), _e(text), atol=1e-5)  # still valid


@pytest.mark.django_db(transaction=True)
def test_reindex_keeps_rows_that_are_still_valid(agent, alpha):
    first, second = _batch(agent, FIRST, SECOND)
    PlainVector.objects.filter(memory_id=first).update(content_hash="0" * 64)
    assert plain_vectors.drop_stale(alpha.pk) == 1
    assert [str(pk) for pk in PlainVector.objects.values_list("memory_id", flat=True)] == [second]


@pytest.mark.django_db(transaction=True)
def test_an_edit_embeds_its_new_content_once_for_itself_and_the_next_turn(
        agent, alpha, team_admin, counting):
    _, second, third = _batch(agent, FIRST, SECOND, THIRD)
    edited = "Yes, though the espresso there was bitter."
    counting.texts.clear()
    assert team_admin.patch(f"/api/v1/memories/{second}", {"content": edited}).status_code == 200
    assert counting.texts == [edited]  # the next turn's re-index reads the kept vector
    np.testing.assert_allclose(_indexed(alpha, third), _mixed(THIRD, edited), atol=1e-5)
