"""An encrypted namespace's memory text is ciphertext in SQL and plaintext at every door
(issue 23, apps/memories/sealing.py): content and every version's before/after, bound to
their row and namespace; a wrong, moved or tampered value and a destroyed key fail closed
with a 503 naming why."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.db import connection

from apps.core import envelope, namespace_keys
from apps.core.errors import Conflict
from apps.core.roles import Role
from apps.memories.models import Memory, MemoryVersion
from apps.tenancy.services import create_namespace
from tests.helpers.callers import make_caller

SECRET = "Dana's locker code is 4417 and her cat is called Pistachio"


def raw(sql: str, *params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def raw_content(pk) -> str:
    row = Memory._meta.pk.get_db_prep_value(pk, connection)
    return raw("SELECT content FROM memories_memory WHERE id = %s", row)[0][0]


def stored(caller, content: str = SECRET) -> str:
    response = caller.post("/api/v1/memories", {"content": content, "tags": ["t"]})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_content_is_ciphertext_in_sql_and_plaintext_through_the_api(vault_agent, agent):
    sealed_id, plain_id = stored(vault_agent), stored(agent)
    assert raw_content(sealed_id).startswith(envelope.TEXT_PREFIX)
    assert "Pistachio" not in raw_content(sealed_id)
    assert raw_content(plain_id) == SECRET  # the same write in a plain namespace: clear text
    assert vault_agent.get(f"/api/v1/memories/{sealed_id}").json()["content"] == SECRET
    assert Memory.objects.get(pk=sealed_id).content == SECRET
    # The dedup hash is keyed there: no dictionary can find the text from it.
    digest = Memory.objects.get(pk=sealed_id).content_hash
    assert digest != hashlib.sha256(SECRET.encode()).hexdigest()
    assert Memory.objects.get(pk=plain_id).content_hash == hashlib.sha256(SECRET.encode()).hexdigest()
    again = vault_agent.post("/api/v1/memories", {"content": SECRET})
    assert again.json()["id"] == sealed_id  # exact duplicates are still found


def test_every_version_is_sealed_and_the_history_reads_back(vault_admin, vault_agent):
    pk = stored(vault_agent, "The launch is on Tuesday")
    response = vault_admin.patch(f"/api/v1/memories/{pk}", {"content": "The launch moved to Friday"})
    assert response.status_code == 200, response.content
    rows = raw("SELECT changes FROM memories_memoryversion")
    assert rows and all("Tuesday" not in r[0] and "Friday" not in r[0] for r in rows)
    assert all(envelope.TEXT_PREFIX in r[0] for r in rows)
    changes = MemoryVersion.objects.get(memory_id=pk).changes
    assert changes["content"] == {"before": "The launch is on Tuesday",
                                  "after": "The launch moved to Friday"}
    assert "Friday" not in raw_content(pk)


def test_a_ciphertext_moved_to_another_row_or_tenant_fails_closed(vault_agent, db):
    other_vault = create_namespace("vault2", encrypted=True)
    other_agent = make_caller(Role.AGENT, other_vault, "agent-w")
    first, second = stored(vault_agent), stored(vault_agent, "Something else entirely")
    theirs = stored(other_agent, "The other tenant's note")
    pk = Memory._meta.pk
    for source, target, caller in ((first, second, vault_agent), (first, theirs, other_agent)):
        raw("UPDATE memories_memory SET content = %s WHERE id = %s", raw_content(source),
            pk.get_db_prep_value(target, connection))
        response = caller.get(f"/api/v1/memories/{target}")
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "undecryptable"
        assert "Pistachio" not in response.content.decode()


def test_a_changed_byte_fails_closed(vault_agent):
    pk = stored(vault_agent)
    sealed = bytearray(envelope.sealed_bytes(raw_content(pk)))
    sealed[-5] ^= 0x40
    raw("UPDATE memories_memory SET content = %s WHERE id = %s",
        envelope.TEXT_PREFIX + base64.urlsafe_b64encode(bytes(sealed)).decode(),
        Memory._meta.pk.get_db_prep_value(pk, connection))
    response = vault_agent.get(f"/api/v1/memories/{pk}")
    assert response.status_code == 503 and response.json()["error"]["code"] == "undecryptable"


def test_a_destroyed_key_answers_503_not_garbage(vault, vault_agent):
    pk = stored(vault_agent)
    namespace_keys.shred(vault.pk)
    namespace_keys.forget_all()
    response = vault_agent.get(f"/api/v1/memories/{pk}")
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "key_unavailable" and "destroyed" in error["message"]
    refused = vault_agent.post("/api/v1/memories", {"content": "a new note"})
    assert refused.status_code == 503  # never stored in clear instead
    assert not Memory.objects.filter(namespace=vault).exclude(pk=pk).exists()


def test_recall_and_lists_answer_plaintext(vault_agent):
    pk = stored(vault_agent)
    stored(vault_agent, "Ordering more coffee beans on Monday")
    listed = vault_agent.get("/api/v1/memories").json()
    assert SECRET in [m["content"] for m in listed["results"]]
    found = vault_agent.post("/api/v1/recall", {"query": "what is the cat called", "mode": "vector"})
    assert found.status_code == 200, found.content
    assert found.json()["results"][0]["id"] == pk
    assert found.json()["results"][0]["content"] == SECRET


def test_a_bulk_update_of_content_stores_ciphertext(vault_agent):
    pk = stored(vault_agent)
    memory = Memory.objects.get(pk=pk)
    memory.content = "Rewritten by a bulk edit: the code is 9931"
    Memory.objects.bulk_update([memory], ["content"])
    assert "9931" not in raw_content(pk) and raw_content(pk).startswith(envelope.TEXT_PREFIX)
    assert memory.content == "Rewritten by a bulk edit: the code is 9931"  # caller's copy unchanged
    assert Memory.objects.get(pk=pk).content == "Rewritten by a bulk edit: the code is 9931"


def test_a_new_data_key_version_keeps_old_rows_readable_and_keyword_recall_working(
        vault, vault_agent):
    old = stored(vault_agent)
    namespace_keys.new_version(vault.pk)  # rotate_keys --namespace
    new = stored(vault_agent, "Pistachio the cat needs her vaccine in March")
    assert envelope.version_of(envelope.sealed_bytes(raw_content(new))) == 2
    assert vault_agent.get(f"/api/v1/memories/{old}").json()["content"] == SECRET
    found = vault_agent.post("/api/v1/recall", {"query": "Pistachio", "mode": "lexical"})
    assert {r["id"] for r in found.json()["results"]} == {old, new}
    again = vault_agent.post("/api/v1/memories", {"content": SECRET})
    assert again.json()["id"] == old  # the keyed dedup hash did not change with the key


def test_metadata_is_sealed_and_its_filters_and_subject_lookup_still_work(vault, vault_agent):
    from apps.memories.subjects import naming_subject

    response = vault_agent.post("/api/v1/memories", {
        "content": "Quarterly review notes", "metadata": {"subject_id": "person-8812",
                                                         "ticket": "T-4471", "priority": 3}})
    pk = response.json()["id"]
    other = stored(vault_agent, "Unrelated memory about quarterly review")
    row = raw("SELECT metadata, metadata_blind FROM memories_memory WHERE id = %s",
              Memory._meta.pk.get_db_prep_value(pk, connection))[0]
    assert "person-8812" not in str(row[0]) and "T-4471" not in str(row[0])
    assert "person-8812" not in str(row[1]) and "subject_id" in str(row[1])
    assert vault_agent.get(f"/api/v1/memories/{pk}").json()["metadata"] == {
        "subject_id": "person-8812", "ticket": "T-4471", "priority": 3}
    for mode in ("vector", "lexical", "hybrid"):  # SQL and Chroma filters compare tokens
        found = vault_agent.post("/api/v1/recall", {
            "query": "quarterly review", "mode": mode, "filters": {"metadata": {"ticket": "T-4471"}}})
        assert found.status_code == 200, found.content
        assert [r["id"] for r in found.json()["results"]] == [pk], mode
        numeric = vault_agent.post("/api/v1/recall", {
            "query": "quarterly review", "mode": mode, "filters": {"metadata": {"priority": 3.0}}})
        assert [r["id"] for r in numeric.json()["results"]] == [pk], mode
    assert list(naming_subject("person-8812").values_list("pk", flat=True)) == [
        Memory.objects.get(pk=pk).pk]
    # An edit that takes the subject out: the sealed version still names it.
    edited = make_caller(Role.ADMIN, vault, "admin-v").patch(
        f"/api/v1/memories/{pk}", {"metadata": {"ticket": "T-4471"}})
    assert edited.status_code == 200, edited.content
    assert set(naming_subject("person-8812").values_list("pk", flat=True)) == {
        Memory.objects.get(pk=pk).pk}
    assert Memory.objects.get(pk=other).metadata == {}


def test_an_encrypted_namespace_is_not_merged_and_its_memories_are_not_moved(vault, vault_agent,
                                                                             agent, system_admin):
    """Into a plain namespace (its memories would be stored in clear) and by a bulk move
    that does not re-seal them; tests/lifecycle/test_merge_encrypted.py merges them."""
    pk = stored(vault_agent)
    response = system_admin.post("/api/v1/namespaces/vault/merge-into", {"target": "alpha"})
    assert response.status_code == 409, response.content
    assert "not encrypted" in response.json()["error"]["message"]
    moved = Memory.objects.get(pk=pk)
    moved.namespace = vault
    with pytest.raises(Conflict):  # a bulk move into (or within) an encrypted namespace
        Memory.objects.bulk_update([moved], ["namespace"])
    assert Memory.objects.get(pk=pk).content == SECRET


def test_other_bulk_writes_never_store_text_in_clear(vault_agent, agent):
    pk = stored(vault_agent)
    with pytest.raises(ValueError, match="in clear"):
        Memory.objects.filter(pk=pk).update(content="Plain via update 9999")
    plain = stored(agent, "a plain namespace's note")
    assert Memory.objects.filter(pk=plain).update(content="edited in place") == 1  # allowed
    # A deferred sealed field in a bulk_update is loaded, then sealed again.
    memory = Memory.objects.only("id", "namespace_id", "tags").get(pk=pk)
    memory.tags = ["x"]
    Memory.objects.bulk_update([memory], ["content", "tags"])
    assert raw_content(pk).startswith(envelope.TEXT_PREFIX) and "4417" not in raw_content(pk)
    assert Memory.objects.get(pk=pk).content == SECRET


def test_text_that_looks_sealed_is_refused_in_a_plain_namespace(agent):
    fake = envelope.TEXT_PREFIX + base64.urlsafe_b64encode(b"x" * 60).decode()
    response = agent.post("/api/v1/memories", {"content": fake})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "content"
    assert not Memory.objects.exists()
    assert agent.get("/api/v1/memories").status_code == 200


def test_a_stale_plain_namespace_object_does_not_write_plaintext(vault, db):
    from apps.memories import sealing
    from apps.tenancy.models import Namespace

    stale = Namespace.objects.get(pk=vault.pk)
    stale.encrypted = False  # loaded before encryption was turned on
    memory = Memory(namespace=stale, content="late plaintext 5521", agent_id="a",
                    content_hash="x")
    sealing.forget()
    memory.save()
    assert "5521" not in raw_content(memory.pk)


def test_consolidation_reads_an_encrypted_namespace(vault, vault_admin, vault_agent):
    for text in ("The standup is at nine every morning", "The standup is at nine each morning",
                 "Ordering coffee beans on Monday"):
        stored(vault_agent, text)
    response = vault_admin.post("/api/v1/namespaces/vault/consolidate", {"dry_run": True})
    assert response.status_code == 200, response.content
    assert "mwenc1" not in response.content.decode()


def test_a_subject_lookup_needs_only_the_keys_of_the_namespaces_it_reads(vault, agent, alpha):
    from apps.memories.subjects import naming_subject

    agent.post("/api/v1/memories", {"content": "About Bob", "metadata": {"subject_id": "bob-7"}})
    namespace_keys.shred(vault.pk)
    namespace_keys.forget_all()
    assert naming_subject("bob-7", [alpha.pk]).count() == 1
    with pytest.raises(namespace_keys.KeyUnavailable):  # fail closed where it must read
        naming_subject("bob-7", [alpha.pk, vault.pk]).count()


def test_the_idempotency_record_keeps_a_keyed_hash_of_the_body(vault_agent):
    from apps.memories.models import IdempotencyRecord

    body = {"content": "yes"}
    first = vault_agent.post("/api/v1/memories", body, HTTP_IDEMPOTENCY_KEY="k1")
    again = vault_agent.post("/api/v1/memories", body, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201 and again.json()["id"] == first.json()["id"]
    stored_hash = IdempotencyRecord.objects.get().request_hash
    assert stored_hash != hashlib.sha256(b'{"content":"yes"}').hexdigest()
    other = vault_agent.post("/api/v1/memories", {"content": "no"}, HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 409  # a different body under the same key is still refused


def test_metadata_tokens_do_not_outlive_a_bulk_update_into_a_plain_namespace(vault_agent, alpha):
    pk = vault_agent.post("/api/v1/memories", {"content": "Badge 7 opens door 3",
                                               "metadata": {"room": "lab"}}).json()["id"]
    memory = Memory.objects.get(pk=pk)
    assert memory.metadata_blind  # tokens while encrypted
    assert memory.metadata == {"room": "lab"}  # opened while it is still sealed to the vault
    memory.namespace = alpha  # a plain namespace: bulk_update writes every attribute it names
    field = Memory._meta.get_field("metadata_blind")
    assert field.pre_save(memory, add=False) is None
    assert memory.metadata_blind is None  # cleared on the instance, not only in the value
