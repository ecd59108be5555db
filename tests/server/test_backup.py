"""Backup while 8 writers run, restore into a fresh data directory: every acknowledged
memory is there, and recall answers the same top 10 for 50 queries. Encrypted backups
need their passphrase; restore refuses a data directory that is not empty."""

from __future__ import annotations

import json
import random
import threading
import time

import httpx
import pytest

from tests.helpers.backup import all_ids, manage_process, set_up_demo
from tests.servers import DaphneServer

WORDS = ("alpha beta gamma delta kettle harbor violet maple copper lantern orbit meadow "
         "falcon granite velvet ember willow quartz saffron tundra cobalt juniper").split()


@pytest.fixture
def embedded_env(embedded_env: dict[str, str]) -> dict[str, str]:
    """The embedded deployment with a model-free embedder (tests/helpers/hash_embedder.py)
    in every server and command here: backup, restore and the writers' acknowledgements
    are the subject, not the model, whose load in each server and restore and whose runs
    over the writers' texts (again in the restore) cost seconds each (about a tenth of
    the two longest tests, measured back to back 2026-12-06; the rest is the server's
    write rate and process starts). The recall comparison needs an embedder that ties
    nowhere: the distinct one."""
    return {**embedded_env, "MEMORYWEB_EMBEDDER": "tests.helpers.hash_embedder.DistinctHashEmbedder"}


def _sentence(rng: random.Random, writer: int, n: int) -> str:
    return f"Writer {writer} note {n}: " + " ".join(rng.choice(WORDS) for _ in range(8)) + "."


def _recall_top10(url: str, key: str, queries: list[str]) -> list[list[str]]:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return [[r["id"] for r in client.post("/api/v1/recall", json={
        "namespace": "demo", "query": q, "k": 10}).json()["results"]] for q in queries]


def test_backup_under_writers_then_restore(embedded_env, tmp_path):
    # The restored copy re-embeds into a new HNSW graph; HNSW is approximate, so two graphs
    # of the same vectors may differ in a near-tie (about 1 query in 50 here). Exploring
    # more candidates than the namespace holds makes both exact, and the comparison fair.
    embedded_env = {**embedded_env, "MEMORYWEB_VECTOR_SEARCH_EF": "100000"}
    key = set_up_demo(embedded_env)
    acked: list[tuple[float, str]] = []  # (time acknowledged, id)
    failures: list[str] = []  # an assert in a thread would only warn: collected, checked below
    stop, lock = threading.Event(), threading.Lock()
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        def writer(number: int) -> None:
            rng, n = random.Random(number), 0
            client = httpx.Client(base_url=server.url, timeout=60,
                                  headers={"Authorization": f"Bearer {key}"})
            while not stop.is_set():
                try:
                    response = client.post("/api/v1/memories", json={
                        "namespace": "demo", "content": _sentence(rng, number, n)})
                except httpx.HTTPError as exc:
                    failures.append(f"writer {number}: {exc}")
                    return
                if response.status_code != 201:
                    failures.append(f"writer {number}: {response.status_code} {response.text}")
                    return
                with lock:
                    acked.append((time.monotonic(), response.json()["id"]))
                n += 1

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acked) < 200 and not failures and time.monotonic() < deadline:
            time.sleep(0.1)  # writers well under way
        assert len(acked) >= 200 and not failures, failures
        started = time.monotonic()
        done = manage_process(embedded_env, "backup", "--output", str(tmp_path / "b.tar.gz"))
        finished = time.monotonic()
        # A few writes acknowledged after the backup returned (so after its snapshot): on a
        # loaded machine the writers could otherwise all be waiting when it ends.
        after = len(acked)
        deadline = time.monotonic() + 60
        while len(acked) < after + 8 and not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        assert not failures, failures  # every write during the backup was acknowledged
        assert "memories" in done.stdout
        assert (tmp_path / "b.tar.gz").stat().st_mode & 0o777 == 0o600  # it holds everything
        acked_before = {i for at, i in acked if at < started}

        restored_env = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "restored")}
        out = manage_process(restored_env, "restore", str(tmp_path / "b.tar.gz")).stdout
        assert "audit chain intact" in out, out
        assert finished > started
        with DaphneServer(tmp_path / "restored.log", restored_env) as copy:
            restored = all_ids(copy.url, key)
            # Every write acknowledged before the backup began is in it; everything in it
            # was acknowledged (by the end of the backup at the latest).
            assert acked_before <= restored
            assert restored <= {i for _, i in acked}  # nothing that was not acknowledged
            assert len(acked) > len(restored)  # the writers went on meanwhile
            # The original loses what came after the snapshot: then both hold the same set.
            original = httpx.Client(base_url=server.url, timeout=60,
                                    headers={"Authorization": f"Bearer {key}"})
            for extra in all_ids(server.url, key) - restored:
                assert original.delete(f"/api/v1/memories/{extra}").status_code == 204
            rng = random.Random(7)
            queries = [" ".join(rng.sample(WORDS, 3)) for _ in range(50)]
            before, after = _recall_top10(server.url, key, queries), _recall_top10(copy.url, key, queries)
            same = sum(a == b for a, b in zip(before, after, strict=True))
            assert same == 50, f"{50 - same} of 50 queries differ"
            stats = json.loads(manage_process(restored_env, "stats", "--json", "--no-vectors").stdout)
            assert stats["namespaces"][0]["memories"] == len(restored)


def test_encrypted_backup_needs_its_passphrase(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        stored = httpx.post(f"{server.url}/api/v1/memories", timeout=60,
                            headers={"Authorization": f"Bearer {key}"},
                            json={"namespace": "demo", "content": "The vault code is 4711."}).json()
        manage_process(embedded_env, "backup", "-o", str(tmp_path / "b.enc"), "--encrypt",
                       stdin="correct horse battery\n")
    blob = (tmp_path / "b.enc").read_bytes()
    assert b"vault code" not in blob and b"SQLite format" not in blob
    fresh = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "fresh")}
    wrong = manage_process(fresh, "restore", str(tmp_path / "b.enc"), stdin="wrong\n", check=False)
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr
    out = manage_process(fresh, "restore", str(tmp_path / "b.enc"), stdin="correct horse battery\n").stdout
    assert "restored 1 namespaces, 1 memories (1 re-embedded)" in out
    with DaphneServer(tmp_path / "fresh.log", fresh) as copy:
        hits = httpx.post(f"{copy.url}/api/v1/recall", timeout=60,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"namespace": "demo", "query": "vault code", "mode": "vector"}).json()
        assert hits["results"][0]["id"] == stored["id"]
    again = manage_process(fresh, "restore", str(tmp_path / "b.enc"), stdin="correct horse battery\n",
                           check=False)
    assert again.returncode != 0 and "empty data directory" in again.stderr


@pytest.mark.parametrize("content", [b"not a backup at all", b""])
def test_restore_refuses_a_file_that_is_not_a_backup(embedded_env, tmp_path, content):
    (tmp_path / "junk").write_bytes(content)
    done = manage_process({**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "d")}, "restore",
                          str(tmp_path / "junk"), check=False)
    assert done.returncode != 0 and "not a readable backup" in done.stderr


REWRITE_CHAIN = """
from apps.audit.models import AuditEntry, AuditHead
previous = None
for entry in AuditEntry.objects.order_by("seq"):
    if entry.seq == 2:
        entry.summary = {"rewritten": True}
    if previous is not None:
        entry.prev_hash = previous
    entry.entry_hash = entry.compute_hash()
    entry.save()
    previous = entry.entry_hash
head = AuditHead.objects.get(pk=1)
head.entry_hash = previous
head.save()
"""


def test_restore_does_not_bless_a_rewritten_audit_chain(embedded_env, tmp_path):
    """Rewriting the chain with recomputed hashes fools the hashes, not the signed anchor:
    the backup carries the anchor, and restore checks the chain against it first."""
    set_up_demo(embedded_env)
    manage_process(embedded_env, "create_namespace", "other")
    manage_process(embedded_env, "shell", "-c", REWRITE_CHAIN)
    manage_process(embedded_env, "backup", "-o", str(tmp_path / "b.tar.gz"))
    fresh = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "fresh")}
    done = manage_process(fresh, "restore", str(tmp_path / "b.tar.gz"), check=False)
    assert done.returncode != 0 and "audit chain BROKEN" in done.stdout, done.stdout + done.stderr


def test_a_failed_restore_is_finished_by_running_it_again(embedded_env, tmp_path):
    key = set_up_demo(embedded_env)
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        httpx.post(f"{server.url}/api/v1/memories/batch", timeout=60, params={"namespace": "demo"},
                   headers={"Authorization": f"Bearer {key}"},
                   json={"memories": [{"content": f"note {i} about the copper kettle"} for i in range(5)]})
    manage_process(embedded_env, "backup", "-o", str(tmp_path / "b.tar.gz"))
    fresh = {**embedded_env, "MEMORYWEB_DATA_DIR": str(tmp_path / "fresh")}
    broken = manage_process({**fresh, "MEMORYWEB_EMBEDDER": "tests.ops.embedders.BrokenEmbedder"},
                            "restore", str(tmp_path / "b.tar.gz"), check=False)
    assert broken.returncode != 0 and "the embedder is broken" in broken.stderr
    ready = manage_process(fresh, "shell", "-c", "from django.test import Client; "
                           "print(Client().get('/readiness').status_code)").stdout
    assert ready.strip().splitlines()[-1] == "503"  # not serving a half-restored directory
    out = manage_process(fresh, "restore", str(tmp_path / "b.tar.gz")).stdout
    assert "restored 1 namespaces, 5 memories (5 re-embedded)" in out and "resumed" in out
    stats = json.loads(manage_process(fresh, "stats", "--json").stdout)
    assert stats["namespaces"][0]["health"] == "ok"


def test_restore_next_to_a_live_deployment_leaves_its_vectors_alone(embedded_env, tmp_path):
    """Both on one Chroma server: the restored namespaces get collections of their own."""
    from tests.servers import ChromaServer

    with ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log") as chroma:
        source = {**embedded_env, "CHROMA_URL": chroma.url}
        key = set_up_demo(source)
        with DaphneServer(tmp_path / "daphne.log", source) as server:
            httpx.post(f"{server.url}/api/v1/memories", timeout=60,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"namespace": "demo", "content": "The copper kettle whistles."})
        manage_process(source, "backup", "-o", str(tmp_path / "b.tar.gz"))
        copy = {**source, "MEMORYWEB_DATA_DIR": str(tmp_path / "copy")}
        manage_process(copy, "restore", str(tmp_path / "b.tar.gz"))
        for env in (source, copy):
            (row,) = json.loads(manage_process(env, "stats", "--json").stdout)["namespaces"]
            assert row["vector_entries"] == row["memories"] == 1, row
