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
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from django.conf import settings

from apps.memories import chroma_cache
from apps.memories.vectorstore import get_vector_store
from tests.helpers.embedded import embedded_environment
from tests.servers import ROOT

EMBEDDED_ONLY = pytest.mark.skipif(
    bool(settings.CHROMA_URL),
    reason="the engine restart guard is the embedded store's (a Chroma server's cache is "
           "its own); the sync guard runs against the server in tests/memories/test_vector_search_ef")

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
                               ENGINE_GUARD=engine_guard, MEMORYWEB_CONTROL_SOCKET="")
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
    fails after an upgrade, Chroma may have fixed it (chroma_cache.py says how to check)."""
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


def test_a_small_collection_syncs_every_write_until_it_grows(alpha, settings):
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 50
    _write(alpha, 20)
    assert _sync_threshold(alpha) == 1
    store = get_vector_store()
    _write(alpha, 40, first=20)  # 60: past the size
    collection = store._collections[store.collection_name(alpha)]
    assert collection.configuration["hnsw"]["sync_threshold"] == chroma_cache.CHROMA_SYNC_THRESHOLD
    assert _sync_threshold(alpha) == chroma_cache.CHROMA_SYNC_THRESHOLD  # as stored


def test_an_existing_small_collection_takes_the_guard_when_opened(alpha, settings):
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 0  # made before the guard: Chroma's default
    _write(alpha, 5)
    assert _sync_threshold(alpha) == chroma_cache.CHROMA_SYNC_THRESHOLD
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = 2000  # the server restarts with it
    assert _sync_threshold(alpha) == 1
    assert get_vector_store().count(alpha) == 5


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
