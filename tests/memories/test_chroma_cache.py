"""Chroma's collection cache (apps/memories/chroma_cache.py): with more namespaces than
its cache holds, every namespace still recalls every vector written to it.

Chroma sizes its cache from the open-file limit (about ``RLIMIT_NOFILE // 5``
collections) and an evicted collection comes back without the vectors written since its
index last went to disk. The eviction tests run a process with a soft limit of 256 open
files (a cache of ~51 collections) that writes 60 namespaces of 130 vectors, 26 at a
time, and reads each back: both guards together (the default), each alone, and neither
(Chroma's own behaviour, which is why they exist).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from types import SimpleNamespace

import numpy as np
import pytest
from django.conf import settings

from apps.memories import chroma_cache
from apps.memories.chroma_files import Gate
from apps.memories.vectorstore import get_vector_store
from tests.helpers.embedded import embedded_environment
from tests.servers import ROOT

EMBEDDED_ONLY = pytest.mark.skipif(
    bool(settings.CHROMA_URL),
    reason="the engine restart guard and Chroma's files are the embedded store's (a Chroma "
           "server's cache and files are its own)")



@pytest.fixture(autouse=True)
def chroma_only(settings):
    """These tests are about Chroma's collections: every namespace goes there from its
    first memory (the small index, which spares small namespaces all this, has its own
    tests: test_small_index.py, test_tiered_store.py)."""
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 0


SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # Chroma's cache: ~51 collections
    import django
    django.setup()
    import numpy as np
    from apps.memories.vectorstore import get_vector_store
    from apps.tenancy.models import Namespace

    store = get_vector_store()
    if os.environ["ENGINE_GUARD"] == "off":
        store.open = None  # the cache left to Chroma, as a Chroma server's is
    rng = np.random.default_rng(5)
    namespaces, vectors, most_fds = [], {}, 0
    for i in range(60):
        ns = Namespace(pk=1000 + i, slug=f"ns{i}", collection=f"cache{i:03d}")
        namespaces.append(ns)
        vectors[i] = rng.normal(size=(130, 32)).astype(np.float32)
        for start in range(0, 130, 26):
            ids = [f"{i}-{j}" for j in range(start, start + 26)]
            store.upsert(ns, ids, vectors[i][start:start + 26], [{"agent_id": "a"}] * 26, fresh=True)
        store.query(ns, vectors[i][0], 3, None)
        most_fds = max(most_fds, len(os.listdir("/proc/self/fd")))
    wrong, failed = [], []
    for i, ns in enumerate(namespaces):
        try:
            hits = store.query(ns, vectors[i][-1], 1, None)
            if store.count(ns) != 130 or hits[0].id != f"{i}-129":
                wrong.append(i)
        except Exception as exc:
            failed.append(f"{i}: {exc}"[:200])
    print("RESULT=" + json.dumps({"wrong": wrong, "failed": failed, "most_fds": most_fds,
        "restarts": store.open.restarts if store.open else None,
        "limit": store.open.limit if store.open else None}))
""")


def _run(tmp_path, engine_guard: str, sync_until: str) -> dict:
    (tmp_path / "data").mkdir()
    env = embedded_environment(tmp_path / "data", MEMORYWEB_VECTOR_SYNC_UNTIL=sync_until,
                               ENGINE_GUARD=engine_guard, MEMORYWEB_CONTROL_SOCKET="",
                               MEMORYWEB_SMALL_INDEX_LIMIT="0")  # every namespace in Chroma
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT="))
    return json.loads(line[7:])


@EMBEDDED_ONLY
@pytest.mark.processes
@pytest.mark.parametrize(("engine_guard", "sync_until"),
                         [("on", "2000"), ("on", "0"), ("off", "2000")],
                         ids=["both-guards", "engine-restart-only", "sync-only"])
def test_more_namespaces_than_chromas_cache_lose_no_vector(tmp_path, engine_guard, sync_until):
    found = _run(tmp_path, engine_guard, sync_until)
    assert found["wrong"] == [] and found["failed"] == [], found
    if engine_guard == "on":
        assert found["limit"] == 40  # four fifths of 256 // 5
        assert found["restarts"] >= 1
        # the engine's files stay bounded: 4 a collection, the limit's worth at most
        assert found["most_fds"] < 4 * 40 + 60, found


@EMBEDDED_ONLY
@pytest.mark.processes
def test_without_the_guards_chroma_loses_an_evicted_collections_latest_vectors(tmp_path):
    """Chroma's own behaviour (chromadb 1.5.9), which the guards exist for: if this
    fails after an upgrade, Chroma may have fixed it: the guards could then go (run the
    scenarios of this module without them to check)."""
    found = _run(tmp_path, "off", "0")
    assert found["wrong"] or found["failed"], found


def _sync_threshold(namespace) -> int:
    store = get_vector_store()
    store._collections.pop(store.collection_name(namespace), None)  # opened afresh
    return store._readable(namespace).configuration["hnsw"]["sync_threshold"]


def _write(namespace, n: int, first: int = 0) -> None:
    rng = np.random.default_rng(first)
    ids = [f"{first + i:032x}" for i in range(n)]
    get_vector_store().upsert(namespace, ids, rng.normal(size=(n, 16)).astype(np.float32),
                              [{"agent_id": "a"}] * n, fresh=True)


def _log_rows(namespace) -> int:
    """Rows of the collection in Chroma's write-ahead log: the writes not yet in its
    HNSW files on disk (Chroma keeps the last one after a sync)."""
    store = get_vector_store()
    collection = store._readable(namespace)
    with closing(sqlite3.connect(f"file:{settings.CHROMA_PATH / 'chroma.sqlite3'}?mode=ro",
                                 uri=True)) as db:
        return db.execute("SELECT count(*) FROM embeddings_queue WHERE topic LIKE ?",
                          [f"%{collection.id}"]).fetchone()[0]


@EMBEDDED_ONLY
def test_a_small_collection_syncs_every_write_until_it_grows(alpha, settings):
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 50
    store = get_vector_store()
    _write(alpha, 20)
    assert _sync_threshold(alpha) == 1
    _write(alpha, 40, first=20)  # 60: past the size
    collection = store._collections[store.collection_name(alpha)]
    assert collection.configuration["hnsw"]["sync_threshold"] == chroma_cache.CHROMA_SYNC_THRESHOLD
    assert _sync_threshold(alpha) == chroma_cache.CHROMA_SYNC_THRESHOLD  # as stored
    assert store.open.stale  # applied at the engine's next start: the next operation
    restarts = store.open.restarts
    assert store.count(alpha) == 60
    assert store.open.restarts == restarts + 1 and not store.open.stale


@EMBEDDED_ONLY
def test_an_existing_small_collection_takes_the_guard_when_opened(alpha, settings):
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 0  # made before the guard: Chroma's default
    _write(alpha, 5)
    _write(alpha, 5, first=5)
    assert _sync_threshold(alpha) == chroma_cache.CHROMA_SYNC_THRESHOLD
    assert _log_rows(alpha) == 10  # every write waits in the log for Chroma's 1,000th
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 2000  # the server restarts with it
    assert _sync_threshold(alpha) == 1
    _write(alpha, 5, first=10)  # the engine restarts first; then the write syncs
    assert _log_rows(alpha) <= 1
    assert get_vector_store().count(alpha) == 15


@EMBEDDED_ONLY
def test_turning_the_guard_off_gives_back_chromas_default(alpha, settings):
    _write(alpha, 5)
    assert _sync_threshold(alpha) == 1
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 0
    assert _sync_threshold(alpha) == chroma_cache.CHROMA_SYNC_THRESHOLD


@pytest.mark.parametrize(("soft", "setting", "expected"),
                         [(1024, 0, 163), (20000, 0, 200), (20000, 500, 500), (1024, 500, 163),
                          (4, 0, 1)])
def test_the_open_limit_stays_under_chromas_cache(monkeypatch, settings, soft, setting, expected):
    monkeypatch.setattr(chroma_cache.resource, "getrlimit", lambda _: (soft, 1 << 20))
    settings.MEMORYWEB_VECTOR_OPEN_COLLECTIONS = setting
    assert chroma_cache.open_limit() == expected


@EMBEDDED_ONLY
def test_the_engine_restarts_before_holding_more_than_the_limit(alpha, beta, vault, monkeypatch):
    store = get_vector_store()
    monkeypatch.setattr(store.open, "limit", 2)
    store.open.clear()  # earlier tests' collections: counted afresh from here
    restarts = store.open.restarts
    for index, namespace in enumerate((alpha, beta, vault)):
        _write(namespace, 3, first=10 * index)
    assert store.open.restarts == restarts + 1  # the third collection: one restart first
    assert len(store.open) <= 2
    for index, namespace in enumerate((alpha, beta, vault)):  # each reads back whole
        assert store.count(namespace) == 3
        hit = store.query(namespace, np.random.default_rng(10 * index).normal(size=(3, 16))
                          .astype(np.float32)[0], 1, None)[0]
        assert hit.id == f"{10 * index:032x}"


class _Engine:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.failures = failures

    def stop(self) -> None:
        self.calls.append("stop")

    def start(self) -> None:
        self.calls.append("start")
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the engine did not start")


def test_a_busy_store_puts_the_restart_off_until_chromas_cache_is_nearly_full():
    gate, engine = Gate(), _Engine()
    client = SimpleNamespace(_server=engine)
    held = chroma_cache.OpenCollections(limit=2, capacity=10)
    for name in ("a", "b"):
        held.add(name)
    busy, release = threading.Event(), threading.Event()

    def compaction() -> None:  # holds the store, as a long copy does
        with gate.shared():
            busy.set()
            release.wait(10)

    worker = threading.Thread(target=compaction)
    worker.start()
    busy.wait(10)
    try:
        chroma_cache.restart_if_due(held, gate, client, "c")  # over the limit, store busy
        assert engine.calls == []  # put off: the operation goes on
        with gate.shared():  # and nobody else was kept out by the attempt
            pass
        for name in "cdefg":
            held.add(name)  # 7 held: within 4 of Chroma's 10 at the next one
        waiting = threading.Thread(target=chroma_cache.restart_if_due,
                                   args=(held, gate, client, "h"))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and engine.calls == []  # it waits for the store now
    finally:
        release.set()
        worker.join(10)
    waiting.join(10)
    assert engine.calls == ["stop", "start"] and len(held) == 0 and held.restarts == 1


def test_an_engine_that_fails_to_start_once_is_started_again(monkeypatch):
    trims = []
    monkeypatch.setattr(chroma_cache, "trim_heap", lambda: trims.append(1))
    engine = _Engine(failures=1)
    chroma_cache.restart_engine(SimpleNamespace(_server=engine))
    assert engine.calls == ["stop", "start", "start"]
    assert trims == [1]  # the stopped engine's memory given back


def test_a_chroma_server_keeps_chromas_default(settings):
    settings.CHROMA_URL = "http://127.0.0.1:8000"
    assert chroma_cache.sync_threshold(5) is None
    settings.CHROMA_URL = ""
    assert chroma_cache.sync_threshold(5) == 1
