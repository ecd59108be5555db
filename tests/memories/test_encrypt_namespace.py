"""``manage.py encrypt_namespace`` (issue 23 item 3, apps/memories/encrypt_existing.py):
encryption turned on for a namespace that already holds memories, versions and events —
every value sealed in SQL, hashes keyed, the same plaintext at the API, the same keyword
recall — idempotent, resumable after a cut-short run, safe beside concurrent writes; and
``--reseal``, which moves what older data key versions sealed to the current one and
retires them."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.audit.models import AuditEntry
from apps.core import envelope, namespace_keys
from apps.core.roles import Role
from apps.memories import encrypt_existing, sealing
from apps.memories.models import Memory, MemoryVersion, content_hash
from apps.tenancy.models import Namespace
from apps.tenancy.services import create_namespace
from tests.helpers.callers import make_caller

FACTS = [
    "Dana's locker code is 4417 and her cat is called Pistachio",
    "The staging deploy needs the VPN and a hardware token",
    "Backups of the billing database run at 02:00 UTC every night",
    "The on-call rota for the platform team changes on Mondays",
    "Grafana dashboards for the billing service live at grafana.internal",
    "The API rate limit for partners is 480 requests per minute",
    "Pistachio the cat needs her vaccine in March at the Elm Street vet",
    "The billing service retries failed card charges three times",
    "Deploys to production are frozen during the last week of December",
    "The VPN certificate for staging expires on the first of June",
]
QUERIES = ["billing database backups", "Pistachio cat", "VPN staging deploy",
           "rate limit partners", "production deploys December"]


def raw(sql: str, *params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def raw_contents(namespace: Namespace) -> dict[str, str]:
    rows = raw("SELECT id, content FROM memories_memory WHERE namespace_id = %s", namespace.pk)
    return {str(Memory._meta.pk.to_python(pk)): content for pk, content in rows}


def raw_changes(namespace: Namespace) -> list[str]:
    return [str(r[0]) for r in raw(
        "SELECT v.changes FROM memories_memoryversion v JOIN memories_memory m "
        "ON m.id = v.memory_id WHERE m.namespace_id = %s ORDER BY v.id", namespace.pk)]


def lexical(caller, query: str) -> list[str]:
    response = caller.post("/api/v1/recall", {"query": query, "mode": "lexical", "k": 10})
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def populate(agent, admin) -> dict[str, str]:
    """Memories, edits (versions) and a session of events; id -> content as stored."""
    ids = []
    for fact in FACTS:
        response = agent.post("/api/v1/memories", {"content": fact, "tags": ["ops"]})
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    for pk, new in ((ids[1], "The staging deploy needs the VPN, a hardware token and approval"),
                    (ids[5], "The API rate limit for partners is 600 requests per minute")):
        edited = admin.patch(f"/api/v1/memories/{pk}", {"content": new})
        assert edited.status_code == 200, edited.content
    events = [{"id": f"e{i}", "event_type": kind, "session_id": "s1", "text": text,
               "occurred_at": f"2026-03-03T10:0{i}:00Z"}
              for i, (kind, text) in enumerate((
                  ("user_message", "Which port does the billing proxy listen on?"),
                  ("assistant_message", "The billing proxy listens on port 8443.")))]
    response = agent.post("/api/v1/events", {"events": events})
    assert response.status_code == 201, response.content
    return {str(m.pk): m.content for m in Memory.objects.all()}


def assert_all_sealed(namespace: Namespace) -> None:
    namespace = Namespace.objects.get(pk=namespace.pk)  # encrypted now
    contents = raw_contents(namespace)
    assert contents and all(c.startswith(envelope.TEXT_PREFIX) for c in contents.values())
    changes = raw_changes(namespace)
    assert changes and all(envelope.TEXT_PREFIX in c for c in changes)
    for fact in FACTS:  # not a word of it left in SQL (long words: base64 holds short ones)
        for word in (w for w in fact.split() if len(w) >= 8):
            assert not any(word in c for c in [*contents.values(), *changes])
    for memory in Memory.objects.filter(namespace=namespace):
        expected = content_hash(memory.content, namespace)  # keyed: the flag is on
        assert memory.content_hash == expected
        assert expected != hashlib.sha256(" ".join(memory.content.split()).encode()).hexdigest()
        assert memory.dedup_slot in (None, expected)


def encrypt(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("encrypt_namespace", *args, "--settle-seconds", "0", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_an_existing_namespace_is_sealed_and_reads_and_recalls_the_same(alpha, agent, team_admin):
    before = populate(agent, team_admin)
    recalls = {q: lexical(agent, q) for q in QUERIES}
    assert all(recalls.values())
    assert not any(c.startswith(envelope.TEXT_PREFIX) for c in raw_contents(alpha).values())

    out = encrypt("alpha")

    alpha.refresh_from_db()
    assert alpha.encrypted and namespace_keys.has_key(alpha.pk)
    assert_all_sealed(alpha)
    assert f"{len(before)} memories" in out and "verification: 0 contents" in out
    for pk, content in before.items():
        assert agent.get(f"/api/v1/memories/{pk}").json()["content"] == content
    edited = next(pk for pk, c in before.items() if "approval" in c)
    history = team_admin.get(f"/api/v1/memories/{edited}/versions")
    assert history.status_code == 200, history.content
    assert "a hardware token and approval" in history.content.decode()
    assert {q: lexical(agent, q) for q in QUERIES} == recalls  # ids and order
    again = agent.post("/api/v1/memories", {"content": FACTS[0]})
    assert again.json()["id"] == next(pk for pk, c in before.items() if c == FACTS[0])
    operations = list(AuditEntry.objects.filter(namespace="alpha", operation__startswith=(
        "encryption.")).values_list("operation", flat=True).order_by("seq"))
    assert operations == ["encryption.encrypt_namespace", "encryption.namespace_sealed"]
    done = AuditEntry.objects.get(operation="encryption.namespace_sealed").summary
    assert done["contents_sealed"] == len(before) and done["versions_sealed"] == 2
    assert done["left_plain_contents"] == done["left_plain_versions"] == 0


def test_the_other_stores_of_the_namespace_are_sealed_too(alpha, agent):
    from apps.gateway.models import GatewayTrace

    trace = GatewayTrace.objects.create(namespace=alpha, level="content", api="chat",
                                        query="where does Pistachio get her vaccine")
    encrypt("alpha")
    stored = raw("SELECT query FROM gateway_gatewaytrace WHERE id = %s", trace.pk)[0][0]
    assert stored.startswith(envelope.TEXT_PREFIX) and "Pistachio" not in stored
    assert GatewayTrace.objects.get(pk=trace.pk).query == "where does Pistachio get her vaccine"
    summary = AuditEntry.objects.get(operation="encryption.namespace_sealed").summary
    assert summary["store_values_sealed"] == 1 and summary["left_plain_store_values"] == 0


def test_metadata_filters_still_find_memories_in_sql_and_in_the_vector_index(alpha, agent):
    pk = agent.post("/api/v1/memories", {"content": "Quarterly review notes for the billing team",
                                         "metadata": {"ticket": "T-4471"}}).json()["id"]
    agent.post("/api/v1/memories", {"content": "Quarterly review of the billing pipeline"})
    encrypt("alpha")
    row = raw("SELECT metadata FROM memories_memory WHERE id = %s",
              Memory._meta.pk.get_db_prep_value(pk, connection))[0][0]
    assert "T-4471" not in str(row)
    for mode in ("vector", "lexical", "hybrid"):  # Chroma holds the value's token now
        found = agent.post("/api/v1/recall", {"query": "quarterly review", "mode": mode,
                                              "filters": {"metadata": {"ticket": "T-4471"}}})
        assert found.status_code == 200, found.content
        assert [r["id"] for r in found.json()["results"]] == [pk], mode


def test_running_it_again_changes_nothing(alpha, agent, team_admin):
    populate(agent, team_admin)
    encrypt("alpha")
    sealed, changes = raw_contents(alpha), raw_changes(alpha)
    out = encrypt("alpha")
    assert raw_contents(alpha) == sealed and raw_changes(alpha) == changes  # not re-sealed
    assert "0 contents, 0 other values and 0 versions sealed" in out
    assert "0 values of other stores sealed" in out
    assert "1 pass(es)" in out


def test_a_run_cut_short_is_finished_by_running_it_again(alpha, agent, team_admin):
    before = populate(agent, team_admin)
    out = encrypt("alpha", "--batch-size", "3", "--max-batches", "2")
    assert "stopped after 2 batch(es)" in out
    contents = raw_contents(alpha)
    sealed = [pk for pk, c in contents.items() if c.startswith(envelope.TEXT_PREFIX)]
    assert len(sealed) == 6  # two batches of three, in primary-key order
    assert sorted(contents)[:6] == sorted(sealed)
    assert Namespace.objects.get(pk=alpha.pk).encrypted  # writes are sealed meanwhile
    for pk, content in before.items():  # half sealed, half not: every row reads
        assert agent.get(f"/api/v1/memories/{pk}").json()["content"] == content
    encrypt("alpha", "--batch-size", "3")
    assert_all_sealed(alpha)
    assert AuditEntry.objects.filter(operation="encryption.encrypt_namespace").count() == 1


def test_a_memory_ingested_after_the_switch_keeps_its_dedup_slot(alpha, agent):
    old = agent.post("/api/v1/memories", {"content": FACTS[0]}).json()["id"]
    assert Memory.objects.get(pk=old).dedup_slot is not None
    encrypt_existing.turn_on(Namespace.objects.get(pk=alpha.pk), "test")
    new = agent.post("/api/v1/memories", {"content": FACTS[0]}).json()["id"]
    assert new != old  # the old row's hash is not keyed yet: dedup cannot find it
    out = encrypt("alpha")
    assert "1 dedup slots given up" in out
    keyed = content_hash(FACTS[0], Namespace.objects.get(pk=alpha.pk))
    assert Memory.objects.get(pk=new).dedup_slot == keyed
    assert Memory.objects.get(pk=old).dedup_slot is None
    assert Memory.objects.get(pk=old).content_hash == keyed
    assert_all_sealed_contents(alpha)


def assert_all_sealed_contents(namespace: Namespace) -> None:
    assert all(c.startswith(envelope.TEXT_PREFIX) for c in raw_contents(namespace).values())


def test_other_namespaces_are_left_alone(alpha, beta, agent, team_admin):
    populate(agent, team_admin)
    theirs = make_caller(Role.AGENT, beta, "agent-b")
    pk = theirs.post("/api/v1/memories", {"content": FACTS[2]}).json()["id"]
    encrypt("alpha")
    assert raw_contents(beta) == {pk: FACTS[2]}
    assert not Namespace.objects.get(pk=beta.pk).encrypted


def test_bad_input_is_refused_and_changes_nothing(alpha, agent):
    with pytest.raises(CommandError, match="no namespace 'nope'"):
        encrypt("nope")
    with pytest.raises(CommandError, match="not encrypted"):
        encrypt("alpha", "--reseal")
    with pytest.raises(CommandError, match="batch-size"):
        encrypt("alpha", "--batch-size", "0")
    with pytest.raises(CommandError, match="settle-seconds"):
        call_command("encrypt_namespace", "alpha", "--settle-seconds", "-1")
    assert not Namespace.objects.get(pk=alpha.pk).encrypted
    assert not namespace_keys.has_key(alpha.pk)


def test_the_default_wait_outlasts_the_plain_cache():
    assert encrypt_existing.settle_seconds() > sealing._PLAIN_TTL_SECONDS


def test_reseal_moves_old_versions_to_the_current_key_and_retires_them(db):
    vault = create_namespace("vault", encrypted=True)
    agent = make_caller(Role.AGENT, vault, "agent-v")
    admin = make_caller(Role.ADMIN, vault, "admin-v")
    ids = [agent.post("/api/v1/memories", {"content": f}).json()["id"] for f in FACTS[:4]]
    admin.patch(f"/api/v1/memories/{ids[0]}", {"content": "Dana's locker code is now 9931"})
    namespace_keys.new_version(vault.pk)  # rotate_keys --namespace vault
    ids.append(agent.post("/api/v1/memories", {"content": FACTS[4]}).json()["id"])
    namespace_keys.new_version(vault.pk)
    recalls = {q: lexical(agent, q) for q in QUERIES}
    versions = {envelope.version_of(envelope.sealed_bytes(c)) for c in raw_contents(vault).values()}
    assert versions == {1, 2}

    out = encrypt("vault", "--reseal")

    contents = raw_contents(vault)
    assert {envelope.version_of(envelope.sealed_bytes(c)) for c in contents.values()} == {3}
    assert all(envelope.version_of(envelope.sealed_bytes(MemoryVersion._meta.get_field(
        "changes").to_python(c) if not c.startswith(envelope.TEXT_PREFIX) else c)) == 3
        for c in (v.stored for v in MemoryVersion.objects.filter(memory__namespace=vault)
                  .values_list("changes", flat=True)))
    assert "retired data key version(s) 2" in out
    status = next(s for s in namespace_keys.status() if s.namespace_id == vault.pk)
    assert status.versions == (1, 3)  # 1 derives the tokens and hashes: kept
    namespace_keys.forget_all()
    assert agent.get(f"/api/v1/memories/{ids[0]}").json()["content"] == "Dana's locker code is now 9931"
    assert {q: lexical(agent, q) for q in QUERIES} == recalls
    summary = AuditEntry.objects.get(operation="encryption.reseal").summary
    per_memory = len(sealing.sealed_fields(Memory))  # content (and metadata where sealed)
    assert summary["resealed"] == 5 * per_memory + 1  # and the one version
    assert summary["retired_versions"] == [2]


# --- concurrent writes -------------------------------------------------------------------

def test_writes_between_batches_are_kept_and_sealed(alpha, agent, team_admin):
    """Between two batches (the progress hook): a new memory, an edit of a memory the
    sweep has passed and of one it has not reached, and a plaintext write behind the sweep
    as a process that still thought the namespace plain would make (raw SQL); none is
    lost, all end sealed — the last one by a second pass."""
    ids = [agent.post("/api/v1/memories", {"content": f"Seed fact {i} about the billing "
                                                       "pipeline"}).json()["id"]
           for i in range(12)]
    order = sorted(ids, key=lambda pk: Memory._meta.pk.to_python(pk).hex)
    written: dict[str, str] = {}
    calls = [0]

    def bar(number: int, total: int):
        def progress(done: int) -> None:
            calls[0] += 1
            if number == 1 and calls[0] == 1:  # after the first batch (4 rows)
                for pk, text in ((order[0], "Seed fact edited behind the sweep"),
                                 (order[-1], "Seed fact edited ahead of the sweep")):
                    assert team_admin.patch(f"/api/v1/memories/{pk}",
                                            {"content": text}).status_code == 200
                    written[pk] = text
                new = agent.post("/api/v1/memories", {"content": "Stored mid-sweep"})
                written[new.json()["id"]] = "Stored mid-sweep"
                stale = "Written in clear by a process that had not seen the flag"
                raw("UPDATE memories_memory SET content = %s, content_hash = %s WHERE id = %s",
                    stale, hashlib.sha256(stale.encode()).hexdigest(),
                    Memory._meta.pk.get_db_prep_value(order[1], connection))
                written[order[1]] = stale
        return progress

    counts = encrypt_existing.run(Namespace.objects.get(pk=alpha.pk), actor="test", settle=0,
                                  batch_size=4, bar=bar)
    assert counts.left_plain_contents == counts.left_plain_versions == 0
    assert counts.passes == 3  # the second sealed the stale write; the third found nothing
    assert_all_sealed_contents(alpha)
    assert all(envelope.TEXT_PREFIX in c for c in raw_changes(alpha))
    for pk, text in written.items():
        assert Memory.objects.get(pk=pk).content == text
    namespace = Namespace.objects.get(pk=alpha.pk)
    for memory in Memory.objects.filter(namespace=alpha):
        assert memory.content_hash == content_hash(memory.content, namespace)


def _retrying_lock(call):
    """SQLite's in-memory test database is shared-cache: a writer meeting another one gets
    "database table is locked" at once instead of waiting on the busy timeout as a real
    database file does; wait and retry (PostgreSQL never raises it)."""
    from django.db import OperationalError

    for _ in range(400):
        try:
            return call()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            import time

            time.sleep(0.01)
    raise AssertionError("the database stayed locked")


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingest_and_edits_are_neither_lost_nor_left_in_clear(alpha, agent, team_admin):
    first = [agent.post("/api/v1/memories", {"content": f"Seed fact number {i} about the "
                                                        f"billing pipeline"}).json()["id"]
             for i in range(60)]
    written: dict[str, str] = {}
    errors: list[str] = []
    stop = threading.Event()

    def write() -> None:
        try:
            i = 0
            while not stop.is_set() or i < 10:
                text = f"Written during the switch, number {i}"
                response = _retrying_lock(lambda t=text: agent.post("/api/v1/memories",
                                                                    {"content": t}))
                if response.status_code not in (200, 201):  # 200: a retry found its first try
                    errors.append(response.content.decode())
                else:
                    written[response.json()["id"]] = text
                target = first[i % len(first)]
                text = f"Seed fact {i % len(first)} edited during the switch, take {i}"
                edited = _retrying_lock(lambda t=text, pk=target: team_admin.patch(
                    f"/api/v1/memories/{pk}", {"content": t}))
                if edited.status_code != 200:
                    errors.append(edited.content.decode())
                else:
                    written[target] = text
                found = _retrying_lock(lambda: agent.post("/api/v1/recall", {
                    "query": "billing pipeline", "mode": "hybrid"}))
                if found.status_code != 200:
                    errors.append(found.content.decode())
                i += 1
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        _retrying_lock(lambda: encrypt("alpha", "--batch-size", "7"))
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not thread.is_alive() and errors == []
    assert len(written) >= 20
    encrypt("alpha")  # what the writer did after the last pass: a second run finds it
    assert_all_sealed_contents(alpha)
    assert all(envelope.TEXT_PREFIX in c for c in raw_changes(alpha))
    for pk, text in written.items():  # every write, as last written
        assert Memory.objects.get(pk=pk).content == text
    namespace = Namespace.objects.get(pk=alpha.pk)
    for memory in Memory.objects.filter(namespace=alpha):
        assert memory.content_hash == content_hash(memory.content, namespace)


# --- a real server, a real command ---------------------------------------------------------

VOCABULARY = ("supplier invoice warehouse pallet freight customs courier refund ledger "
              "audit payroll pension contract renewal license server backup outage "
              "rollback deploy canary latency budget forecast quarter vendor").split()
PROCESS_QUERIES = ["supplier invoice", "warehouse pallet freight", "payroll pension",
                   "server outage rollback", "vendor contract renewal", "latency budget"]


@pytest.mark.processes
@pytest.mark.skipif(bool(os.environ.get("CHROMA_URL")), reason="runs once, in the embedded "
                    "pass (its server is the embedded one in every pass)")
def test_a_serving_daphne_keeps_answering_while_the_command_encrypts_2000_memories(tmp_path):
    """2,000 memories (100 edited) and 100 events in a plain namespace of a real Daphne;
    ``manage.py encrypt_namespace`` runs in its own process while a client ingests, edits
    and recalls: no request fails, nothing written is lost, the database file holds the
    namespace sealed, and recall (keyword and vector) answers as before."""
    import os
    import random
    import sqlite3
    import subprocess
    import sys

    import httpx

    from tests.helpers.embedded import manage_commands, migrate
    from tests.servers import ROOT, DaphneServer

    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(data_dir), "MEMORYWEB_KEYSTORE_DIR": str(tmp_path / "keys"),
                "MEMORYWEB_ENV": "local", "DEBUG": "false",
                "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                "MEMORYWEB_RATE_LIMIT": "", "MEMORYWEB_TOKEN_RATE": "1000000/min",
                # A model-free embedder for server and command alike (tests/helpers/
                # hash_embedder.py): what is tested is that no request fails, no write is lost
                # and vector recall answers as before the switch, with any deterministic
                # embedder; MiniLM over the 2,000 texts was most of the minutes. Its texts tie
                # nowhere, and the search is exhaustive (an ef above the namespace's size), so
                # "as before" compares the ranking, not an approximate graph's luck.
                "MEMORYWEB_EMBEDDER": "tests.helpers.hash_embedder.DistinctHashEmbedder",
                "MEMORYWEB_VECTOR_SEARCH_EF": "100000"})
    migrate(env)
    agent_key, admin_key = (out.splitlines()[-1] for out in manage_commands(
        env, ["create_namespace", "demo"],
        ["create_api_key", "--namespace", "demo", "--role", "agent", "--agent-id", "agent-demo"],
        ["create_api_key", "--namespace", "demo", "--role", "admin", "--agent-id", "admin-demo"])[1:])
    rng = random.Random(23)

    def sentence(i: int) -> str:
        return f"Note {i}: " + " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(4, 9)))

    with DaphneServer(tmp_path / "daphne.log", env) as server, \
            httpx.Client(base_url=server.url, timeout=120,
                         headers={"Authorization": f"Bearer {agent_key}"}) as client:
        admin = {"Authorization": f"Bearer {admin_key}"}
        ids: list[str] = []
        for start in (0, 1000):
            stored = client.post("/api/v1/memories/batch", json={"memories": [
                {"content": sentence(i)} for i in range(start, start + 1000)]})
            assert stored.status_code == 201, stored.text
            ids += [item["id"] for item in stored.json()["results"]]
        for pk in ids[:100]:
            edited = client.patch(f"/api/v1/memories/{pk}", headers=admin,
                                  json={"content": sentence(5000)})
            assert edited.status_code == 200, edited.text
        events = client.post("/api/v1/events", json={"events": [
            {"id": f"e-{i}", "event_type": "user_message", "session_id": "conv-1",
             "occurred_at": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z", "text": sentence(9000 + i)}
            for i in range(100)]})
        assert events.status_code == 201, events.text

        def recall(mode: str) -> dict[str, list[str]]:
            found = {}
            for query in PROCESS_QUERIES:
                answer = client.post("/api/v1/recall", json={"query": query, "mode": mode, "k": 10})
                assert answer.status_code == 200, answer.text
                found[query] = [r["id"] for r in answer.json()["results"]]
            return found

        before = {mode: recall(mode) for mode in ("lexical", "vector")}
        command = subprocess.Popen(
            [sys.executable, "manage.py", "encrypt_namespace", "demo", "--batch-size", "100"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        written: dict[str, str] = {}
        failures: list[str] = []
        i = 0
        while (command.poll() is None or i < 5) and len(failures) < 20:
            text = f"Written during the switch {i} zebra{i}"
            stored = client.post("/api/v1/memories", json={"content": text})
            if stored.status_code != 201:
                failures.append(stored.text)
                continue
            pk = stored.json()["id"]
            text = f"Edited during the switch {i} okapi{i}"
            edited = client.patch(f"/api/v1/memories/{pk}", headers=admin, json={"content": text})
            if edited.status_code != 200:
                failures.append(edited.text)
            written[pk] = text
            for mode in ("lexical", "hybrid"):
                found = client.post("/api/v1/recall", json={"query": "supplier invoice",
                                                             "mode": mode})
                if found.status_code != 200:
                    failures.append(found.text)
            i += 1
        out, err = command.communicate(timeout=600)
        assert command.returncode == 0, err[-3000:]
        assert "verification: 0 contents" in out, out
        assert failures == [] and len(written) >= 5
        for pk, text in written.items():
            assert client.get(f"/api/v1/memories/{pk}").json()["content"] == text
        for pk in written:  # the corpus as it was, for BM25's statistics
            assert client.delete(f"/api/v1/memories/{pk}", headers=admin).status_code == 204
        after = {mode: recall(mode) for mode in ("lexical", "vector")}
        assert after == before

    with sqlite3.connect(f"file:{data_dir / 'memoryweb.sqlite3'}?mode=ro", uri=True) as db:
        (ns_id,), = db.execute("SELECT id FROM tenancy_namespace WHERE slug = 'demo'").fetchall()
        contents = [r[0] for r in db.execute(
            "SELECT content FROM memories_memory WHERE namespace_id = ?", (ns_id,))]
        changes = [r[0] for r in db.execute(
            "SELECT v.changes FROM memories_memoryversion v JOIN memories_memory m "
            "ON m.id = v.memory_id WHERE m.namespace_id = ?", (ns_id,))]
    assert len(contents) == 2100 and all(c.startswith(envelope.TEXT_PREFIX) for c in contents)
    assert len(changes) >= 100 and all(envelope.TEXT_PREFIX in c for c in changes)
