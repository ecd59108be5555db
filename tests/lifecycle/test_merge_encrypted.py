"""Namespace merges of encrypted namespaces (issue 21 x issue 23, docs/lifecycle.md and
docs/encryption.md): every moved memory is re-sealed for the target — content, metadata
and every version's changes under the target's key and associated data, the metadata's
blind tokens, the keyed content hash and dedup slot and the keyword index's blind tokens
recomputed under the target's keys — and the revert re-seals them back. A merge that
would store an encrypted namespace's memories in clear is refused."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from apps.core import envelope, namespace_keys
from apps.core.key_providers import KeyUnavailable
from apps.core.roles import Role
from apps.lifecycle import namespace_merge
from apps.lifecycle.models import NamespaceMerge
from apps.memories import lexical, write_moves
from apps.memories.models import Memory, MemoryVersion, content_hash
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.services import create_namespace
from tests.helpers.callers import make_caller

#: Commits for real: batches commit with their progress, a deletion shreds after commit.
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("keyword_tables")]  # about the FTS5 tables

TEXTS = ["Dana's locker code is 4417 and her cat is called Pistachio.",
         "The Zanzibar rollout needs the quokka flag flipped before noon.",
         "Marisol keeps the spare badge 88213 in the east wing drawer."]
EDITED = "Dana's locker code changed to 5528; her cat is still Pistachio."
SHARED = "The office closes at six on Fridays."
METADATA = {"subject_id": "person-8812", "ticket": "T-4471", "priority": 3}
#: Words of the memories above: none may be in SQL once they live in an encrypted namespace.
WORDS = ["Pistachio", "4417", "5528", "Zanzibar", "quokka", "Marisol", "88213",
         "office closes", "person-8812", "T-4471"]


def _raw(sql: str, *params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _db_id(pk) -> object:
    return Memory._meta.pk.get_db_prep_value(pk, connection)


def _store(caller, text: str, **fields) -> str:
    response = caller.post("/api/v1/memories", {"content": text, **fields})
    assert response.status_code in (200, 201), response.content
    return response.json()["id"]


@pytest.fixture(params=["encrypted", "plain"])
def pair(request, system_admin):
    """A source (encrypted or plain) filled through the API and an encrypted target with
    its own copy of one memory: ids and what each memory must read as."""
    source = create_namespace("src", encrypted=request.param == "encrypted")
    target = create_namespace("dst", encrypted=True)
    writer = make_caller(Role.AGENT, source, "agent-s")
    admin = make_caller(Role.ADMIN, source, "admin-s")
    ids = [_store(writer, TEXTS[0], metadata=METADATA, tags=["ops"], session_id="s1"),
           _store(writer, TEXTS[1], session_id="s1"),
           _store(writer, TEXTS[2], metadata={"ticket": "T-9"})]
    edit = admin.patch(f"/api/v1/memories/{ids[0]}", {"content": EDITED})
    assert edit.status_code == 200, edit.content
    dup = _store(writer, SHARED)
    own = _store(make_caller(Role.AGENT, target, "agent-t"), SHARED)
    expected = {ids[0]: (EDITED, METADATA), ids[1]: (TEXTS[1], {}),
                ids[2]: (TEXTS[2], {"ticket": "T-9"}), dup: (SHARED, {})}
    return {"source": source, "target": target, "ids": ids, "dup": dup, "own": own,
            "expected": expected, "kind": request.param}


def _reads_back(caller, expected: dict[str, tuple[str, dict]], namespace: Namespace) -> None:
    """Every memory reads as written through the API, its history too, its hash is the
    namespace's own."""
    for pk, (text, metadata) in expected.items():
        got = caller.get(f"/api/v1/memories/{pk}")
        assert got.status_code == 200, got.content
        assert got.json()["content"] == text and got.json()["metadata"] == metadata
        memory = Memory.objects.get(pk=pk)
        assert memory.namespace_id == namespace.pk
        assert memory.content_hash == content_hash(text, namespace)
        versions = caller.get(f"/api/v1/memories/{pk}/versions")
        assert versions.status_code == 200, versions.content
        assert all(isinstance(v["changes"], dict) for v in versions.json())
    history = {v["version"]: v["changes"] for v in caller.get(
        f"/api/v1/memories/{next(iter(expected))}/versions").json()}
    assert any(c.get("content") == {"before": TEXTS[0], "after": EDITED}
               for c in history.values()), history


def _nothing_in_clear(ids) -> None:
    """SQL (read raw) holds ciphertext for content, metadata and every version's changes."""
    for pk in ids:
        content, metadata = _raw("SELECT content, metadata FROM memories_memory WHERE id = %s",
                                 _db_id(pk))[0]
        assert content.startswith(envelope.TEXT_PREFIX), content
        assert envelope.TEXT_PREFIX in str(metadata)
        changes = [row[0] for row in _raw(
            "SELECT changes FROM memories_memoryversion WHERE memory_id = %s", _db_id(pk))]
        assert all(envelope.TEXT_PREFIX in str(c) for c in changes)
        for word in WORDS:
            assert word not in content and word not in str(metadata), word
            assert not any(word in str(c) for c in changes), word


def _index_holds_no_words(namespace: Namespace, ids) -> None:
    """The keyword index of an encrypted namespace: blind tokens, no word of the memories
    (SQLite's FTS5 table; PostgreSQL's token columns of the rows)."""
    if connection.vendor == "sqlite":
        rows = _raw(f"SELECT content, context FROM {lexical.fts_table(namespace.pk)}")
    else:
        rows = [_raw("SELECT blind_search::text, coalesce(context_search::text, '') "
                     "FROM memories_memory WHERE id = %s", _db_id(pk))[0] for pk in ids]
        assert all(row[0] for row in rows)  # every moved memory has its tokens
    assert rows
    for word in [w for w in WORDS if not w.isdigit()]:  # tokens are digits: numbers may occur
        assert not any(word.lower() in f"{a} {b}".lower() for a, b in rows), word


def _recalled(caller, query: str, **filters) -> dict[str, list[str]]:
    found = {}
    for mode in ("lexical", "hybrid"):
        body = {"query": query, "mode": mode}
        if filters:
            body["filters"] = filters
        response = caller.post("/api/v1/recall", body)
        assert response.status_code == 200, response.content
        found[mode] = [r["id"] for r in response.json()["results"]]
    return found


def test_merged_into_an_encrypted_target_every_memory_is_sealed_for_it(pair, system_admin):
    source, target, ids = pair["source"], pair["target"], pair["ids"]
    reader = make_caller(Role.ADMIN, target, "admin-t")
    response = system_admin.post("/api/v1/namespaces/src/merge-into", {"target": "dst"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "done" and body["moved"] == 4 and body["duplicates"] == 1
    _reads_back(reader, pair["expected"], target)
    _nothing_in_clear(pair["expected"])
    _index_holds_no_words(target, pair["expected"])
    blind = _raw("SELECT metadata_blind FROM memories_memory WHERE id = %s", _db_id(ids[0]))[0][0]
    assert "person-8812" not in str(blind) and "subject_id" in str(blind)
    # The dedup against the target's own copy used the target's keyed hash.
    assert str(Memory.objects.get(pk=pair["dup"]).superseded_by_id) == pair["own"]
    # Recall finds them in the target: keyword (blind tokens under its key), hybrid, and
    # the metadata filter (the values' blind tokens under its key).
    for mode, found in _recalled(reader, "Zanzibar quokka rollout").items():
        assert found and found[0] == ids[1], (mode, found)
    for mode, found in _recalled(reader, "locker code", metadata={"ticket": "T-4471"}).items():
        assert found == [ids[0]], (mode, found)
    # Exact dedup against the target: the same text stored there again is the moved memory.
    again = make_caller(Role.AGENT, target, "agent-t2").post("/api/v1/memories",
                                                             {"content": TEXTS[1]})
    assert again.json()["id"] == ids[1], again.content
    assert Memory.objects.filter(namespace=target).count() == 5
    # The source keeps its key (its archived rows, erasure requests and the revert need
    # it); deleting the merged source shreds it, and the moved memories still read.
    if pair["kind"] == "encrypted":
        assert namespace_keys.data_key(source.pk)
    assert system_admin.delete("/api/v1/namespaces/src").status_code == 204
    namespace_keys.forget_all()
    if pair["kind"] == "encrypted":
        with pytest.raises(KeyUnavailable):
            namespace_keys.data_key(source.pk)
    assert reader.get(f"/api/v1/memories/{ids[0]}").json()["content"] == EDITED


def test_the_revert_reseals_everything_back_for_the_source(pair, system_admin):
    source, ids = pair["source"], pair["ids"]
    merge = namespace_merge.merge_into(Principal.for_key(system_admin.key), "src",
                                       {"target": "dst"})[0]
    assert merge is not None and merge.state == "done"
    response = system_admin.post(f"/api/v1/namespace-merges/{merge.pk}/revert")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "reverted"

    reader = make_caller(Role.ADMIN, Namespace.objects.get(pk=source.pk), "admin-after")
    _reads_back(reader, pair["expected"], source)
    assert Memory.objects.get(pk=pair["dup"]).superseded_by_id is None
    if pair["kind"] == "encrypted":
        _nothing_in_clear(pair["expected"])
    else:  # back as it was: a plain namespace's text in clear, no blind tokens
        assert _raw("SELECT content FROM memories_memory WHERE id = %s",
                    _db_id(ids[1]))[0][0] == TEXTS[1]
        assert _raw("SELECT metadata_blind FROM memories_memory WHERE id = %s",
                    _db_id(ids[0]))[0][0] is None
        if connection.vendor == "postgresql":  # the target's tokens do not follow
            assert _raw("SELECT count(*) FROM memories_memory WHERE namespace_id = %s "
                        "AND blind_search IS NOT NULL", source.pk)[0][0] == 0
    for mode, found in _recalled(reader, "Zanzibar quokka rollout").items():
        assert found and found[0] == ids[1], (mode, found)
    for mode, found in _recalled(reader, "locker code", metadata={"ticket": "T-4471"}).items():
        assert found == [ids[0]], (mode, found)
    again = make_caller(Role.AGENT, source, "agent-s2").post("/api/v1/memories",
                                                             {"content": TEXTS[2]})
    assert again.json()["id"] == ids[2], again.content  # dedup in the source again


def test_an_encrypted_source_is_not_merged_into_a_plain_target(vault, vault_agent, alpha,
                                                               system_admin):
    pk = _store(vault_agent, TEXTS[0])
    dry = system_admin.post("/api/v1/namespaces/vault/merge-into",
                            {"target": "alpha", "dry_run": True})
    assert dry.status_code == 200 and "not encrypted" in dry.json()["refused"]
    for route, body in (("/api/v1/namespaces/vault/merge-into", {"target": "alpha"}),
                        ("/cmm/merge", {"source": "vault", "target": "alpha"})):
        response = system_admin.post(route, body)
        assert response.status_code == 409, response.content
        message = response.json()["error"]["message"]
        assert "not encrypted" in message and "encrypt_namespace" in message, message
    vault.refresh_from_db()
    assert vault.archived_at is None and not NamespaceMerge.objects.exists()
    assert ApiKey.objects.get(pk=vault_agent.key.pk).revoked_at is None
    assert Memory.objects.get(pk=pk).namespace_id == vault.pk
    assert vault_agent.get(f"/api/v1/memories/{pk}").json()["content"] == TEXTS[0]


@pytest.mark.parametrize("then", ["resume", "revert"])
def test_a_batch_that_fails_mid_way_leaves_every_memory_readable_and_resumes(
        then, vault, vault_agent, system_admin, settings, monkeypatch):
    settings.MEMORYWEB_NAMESPACE_MERGE_BATCH = 2
    target = create_namespace("vault2", encrypted=True)
    ids = [_store(vault_agent, text) for text in [*TEXTS, SHARED]]
    real = write_moves.lexical.add
    calls = []

    def failing_second(namespace_id, memory_ids):
        calls.append(namespace_id)
        real(namespace_id, memory_ids)  # written, then the batch fails after it
        if len(calls) == 2:
            raise ConnectionError("the worker died")

    monkeypatch.setattr(write_moves.lexical, "add", failing_second)
    merge, status = namespace_merge.merge_into(Principal.for_key(system_admin.key), "vault",
                                               {"target": "vault2"})
    assert status["state"] == "failed" and status["moved"] == 2, status
    # The first batch is in the target, sealed for it; the second rolled back whole and
    # reads in the source under the source's key.
    for pk in ids:
        memory = Memory.objects.get(pk=pk)
        assert memory.content in [*TEXTS, SHARED]
        assert memory.namespace_id in (vault.pk, target.pk)
    assert Memory.objects.filter(namespace=target).count() == 2
    monkeypatch.setattr(write_moves.lexical, "add", real)
    if then == "revert":  # what the failed merge moved goes back, sealed for the source
        response = system_admin.post(f"/api/v1/namespace-merges/{merge.pk}/revert")
        assert response.json()["state"] == "reverted", response.content
        assert response.json()["report"]["moved_back"] == 2
        reader = make_caller(Role.READER, vault, "reader-v")
        for pk, text in zip(ids, [*TEXTS, SHARED], strict=True):
            assert reader.get(f"/api/v1/memories/{pk}").json()["content"] == text
        assert Memory.objects.filter(namespace=vault).count() == 4
        _nothing_in_clear(ids)
        return
    NamespaceMerge.objects.filter(pk=merge.pk).update(heartbeat_at=None)
    assert namespace_merge.run(merge.pk) == "done"
    reader = make_caller(Role.READER, target, "reader-t")
    for pk, text in zip(ids, [*TEXTS, SHARED], strict=True):
        assert reader.get(f"/api/v1/memories/{pk}").json()["content"] == text
    _nothing_in_clear(ids)


def test_a_plain_source_leaves_no_text_in_the_admin_log(alpha, agent, system_admin):
    """Older admin-log rows held a memory's first characters (object_repr): a move into
    an encrypted target leaves them naming the memory by id only."""
    target = create_namespace("vault2", encrypted=True)
    pk = _store(agent, TEXTS[0])
    _admin_row(pk)
    assert system_admin.post("/api/v1/namespaces/alpha/merge-into",
                             {"target": "vault2"}).json()["state"] == "done"
    reprs = list(LogEntry.objects.filter(object_id=pk).values_list("object_repr", flat=True))
    assert reprs and all("Pistachio" not in r for r in reprs), reprs
    assert Memory.objects.get(pk=pk).namespace_id == target.pk


def _admin_row(pk) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create(username="old-admin")
    LogEntry.objects.create(content_type=ContentType.objects.get_for_model(Memory),
                            object_id=str(pk), object_repr=TEXTS[0][:60], action_flag=CHANGE,
                            change_message="[]", user=user)


def test_a_move_never_writes_a_sealed_value_under_another_namespace(vault, vault_agent):
    """The bulk door: moving rows of (or into) an encrypted namespace without their
    opened sealed fields is refused, not stored under the wrong associated data."""
    from apps.core.errors import Conflict

    target = create_namespace("vault2", encrypted=True)
    pk = _store(vault_agent, TEXTS[1])
    memory = Memory.objects.get(pk=pk)  # content and metadata still sealed, unopened
    memory.namespace = target
    for fields in (["namespace"], ["namespace", "content", "metadata"]):
        with pytest.raises(Conflict):
            Memory.objects.bulk_update([memory], fields)
    assert vault_agent.get(f"/api/v1/memories/{pk}").json()["content"] == TEXTS[1]
    assert MemoryVersion.objects.filter(memory_id=pk).count() == 0


def test_a_namespace_whose_key_is_gone_is_not_merged(alpha, agent, system_admin):
    """Checked before anything changes: the source is not archived, its keys not revoked
    for a merge whose first batch could not seal anything."""
    target = create_namespace("vault2", encrypted=True)
    pk = _store(agent, TEXTS[0])
    namespace_keys.shred(target.pk)
    namespace_keys.forget_all()
    response = system_admin.post("/api/v1/namespaces/alpha/merge-into", {"target": "vault2"})
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "key_unavailable"
    alpha.refresh_from_db()
    assert alpha.archived_at is None and not NamespaceMerge.objects.exists()
    assert ApiKey.objects.get(pk=agent.key.pk).revoked_at is None
    assert Memory.objects.get(pk=pk).namespace_id == alpha.pk


def test_a_source_midway_through_encrypt_namespace_merges_its_two_copies_of_a_text(system_admin):
    from apps.memories import encrypt_existing

    source = create_namespace("src")
    create_namespace("dst", encrypted=True)
    writer = make_caller(Role.AGENT, source, "agent-s")
    first = _store(writer, TEXTS[0])  # its slot: the plain hash
    encrypt_existing.turn_on(source, "system:test")  # the flag is on, the sweep not run yet
    source.refresh_from_db()
    second = _store(make_caller(Role.AGENT, source, "agent-s2"), TEXTS[0])  # the keyed hash
    assert first != second  # the plain slot did not match: two rows, two slots

    response = system_admin.post("/api/v1/namespaces/src/merge-into", {"target": "dst"})

    assert response.status_code == 200, response.content  # not a unique-slot failure
    assert response.json()["state"] == "done"
    slots = list(Memory.objects.filter(pk__in=[first, second]).values_list("dedup_slot", flat=True))
    assert sorted(slot is None for slot in slots) == [False, True]  # one keeps the slot
