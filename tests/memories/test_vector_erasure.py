"""Erasure reaches the vector bytes on disk, not only Chroma's API.

Measured with chromadb 1.5.9 (docs/privacy.md, "What erasure reaches on disk in the vector
store"): ``delete_collection`` left the collection's segment directory (its HNSW files),
and a deleted vector stayed in the HNSW files, in Chroma's log (``embeddings_queue``) and
in the SQLite pages its rows freed. These tests look for a memory's vector in every file
under the embedded Chroma directory, as float32 (the HNSW copy is normalised again, so a
few ulps apart: compared with a tolerance, at every byte alignment).
"""

from __future__ import annotations

import ctypes
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from apps.memories import chroma_files
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.namespaces import delete_namespace
from apps.tenancy.principal import Principal
from bench.hash_embedder import HashEmbedder
from tests.helpers.erasure import erase_through_requests
from tests.helpers.vector_index import files_holding

#: Commits for real: erasure certifies against the audit anchor after each commit.
pytestmark = pytest.mark.django_db(transaction=True)



@pytest.fixture(autouse=True)
def chroma_only(settings):
    """Chroma's files: every namespace goes there from its first memory. What erasure
    reaches in the small index, where small namespaces live by default, is
    test_tiered_store.py's."""
    settings.MEMORYWEB_SMALL_INDEX_LIMIT = 0


EMBEDDED_ONLY = pytest.mark.skipif(
    bool(settings.CHROMA_URL),
    reason="reads the embedded Chroma's files under CHROMA_PATH; with a Chroma server "
           "(CHROMA_URL, scaled mode) its files are in the server's directory, out of reach")


def _files_holding(vector: np.ndarray) -> list[str]:
    return files_holding(vector)


def _segment_dirs(collection_name: str) -> list[Path]:
    """The segment directories of a live collection, from Chroma's sysdb."""
    rows = chroma_files.read_sysdb(
        Path(settings.CHROMA_PATH),
        "SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection WHERE c.name = ?",
        [collection_name])
    return [Path(settings.CHROMA_PATH) / row[0] for row in rows]


def _store(caller, words: str) -> str:
    response = caller.post("/api/v1/memories", {"content": f"{words} ({uuid.uuid4().hex})"})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _fill(namespace, n: int, words: str) -> list[str]:
    """Enough vectors that Chroma persists the HNSW files (hnsw:sync_threshold 1000 is
    counted in log records; each upsert of 100 writes 100 of them).

    The filler is only there to make Chroma write its files: any vectors do, and no
    assertion reads a filler's memory. They are written straight into the namespace's
    collection (as the write path's ``upsert`` does, 100 at a time), with the model-free
    hash embedder's vectors (bench/hash_embedder.py): 1,100 memories through the whole
    ingest path (validation, SQL, keyword index, near-duplicate checks) were most of each
    test's time. The memories under test (the secret, the kept ones) and the queries
    still go through the API and the real model."""
    texts = [f"{words} {i} ({uuid.uuid4().hex})" for i in range(n)]
    ids = [str(uuid.uuid4()) for _ in range(n)]
    vectors = HashEmbedder().embed(texts)
    store = get_vector_store()
    for start in range(0, n, 100):
        chunk = ids[start:start + 100]
        store.upsert(namespace, chunk, vectors[start:start + 100], [{"agent_id": "filler"}] * len(chunk),
                     fresh=True)
    return ids


@EMBEDDED_ONLY
def test_deleting_a_namespace_removes_its_segment_directory_and_vector_bytes(
        alpha, beta, agent, outsider, system_admin):
    secret = _store(agent, "Ada's locker code is 4411")
    _fill(alpha, 1100, "alpha filler note")  # the HNSW files are written to disk
    kept = _store(outsider, "beta keeps its own note about lunch")
    store = get_vector_store()
    vector = store.embeddings(alpha, [secret])[secret]
    directories = _segment_dirs(store.collection_name(alpha))
    assert any((d / "data_level0.bin").exists() for d in directories), "nothing persisted"
    assert _files_holding(vector), "the test cannot see the vector before the deletion"

    delete_namespace(Principal.for_key(system_admin.key), alpha)

    assert directories and not any(d.exists() for d in directories)
    assert _files_holding(vector) == []
    assert chroma_files.orphan_segments() == []
    assert chroma_files.disk_residue([secret]) == 0
    # The other tenant's vector is on disk and recalled.
    assert _files_holding(store.embeddings(beta, [kept])[kept])
    recalled = outsider.post("/api/v1/recall", {"query": "lunch note"}).json()
    assert recalled["results"][0]["id"] == kept


def _erase_ids(team_admin, system_admin, ids: list[str]) -> dict:
    return erase_through_requests(team_admin, system_admin, {"ids": ids})


@EMBEDDED_ONLY
@pytest.mark.parametrize(("filler", "sync_until"), [(0, 0), (1100, 0), (0, 2000)],
                         ids=["log-only", "hnsw-persisted", "small-synced"])
def test_erasing_a_memory_removes_its_vector_bytes_and_keeps_the_others(
        alpha, agent, team_admin, system_admin, filler, sync_until, settings):
    """With Chroma's sync every 1,000 writes (``MEMORYWEB_VECTOR_SYNC_UNTIL`` 0), a small
    namespace's vectors are only in Chroma's log, a large one's in the HNSW files too;
    by default a small namespace writes its HNSW files at every write (chroma_cache.py)."""
    settings.MEMORYWEB_VECTOR_SYNC_UNTIL = sync_until
    erased = _store(agent, "Dana's blood type is AB negative")
    kept = _store(agent, "The office closes at six")
    if filler:
        _fill(alpha, filler, "filler about the weather")
    store = get_vector_store()
    vectors = store.embeddings(alpha, [erased, kept])
    assert _files_holding(vectors[erased]), "the test cannot see the vector before erasure"

    certificate = _erase_ids(team_admin, system_admin, [erased])

    assert _files_holding(vectors[erased]) == []
    assert _files_holding(vectors[kept])  # the check can fail: kept bytes are found
    assert chroma_files.disk_residue([erased]) == 0
    assert all(check["ok"] for check in certificate["verification"].values())
    assert store.embeddings(alpha, [erased]) == {}
    assert store.count(alpha) == 1 + filler
    recalled = agent.post("/api/v1/recall", {"query": "when does the office close"}).json()
    assert recalled["results"][0]["id"] == kept


def test_recall_and_writes_work_after_compaction_and_a_dropped_namespace(
        alpha, beta, agent, outsider, system_admin):
    """In both modes: the store's operations go on after compact and drop_collection
    (embedded: the client was closed and opened again around the vacuum)."""
    mine = _store(agent, "Alpha's printer is on floor three")
    theirs = _store(outsider, "Beta's printer is in the basement")
    store = get_vector_store()
    compacted = store.compact(alpha)
    assert compacted is (not settings.CHROMA_URL)
    assert store.embeddings(alpha, [mine]).keys() == {mine}

    delete_namespace(Principal.for_key(system_admin.key), alpha)

    later = _store(outsider, "Beta's stapler is in the second drawer")
    assert store.all_ids(beta) == {theirs, later}
    recalled = outsider.post("/api/v1/recall", {"query": "where is the printer"}).json()
    assert recalled["results"][0]["id"] == theirs


def test_operations_during_a_compaction_wait_for_it_and_none_is_lost(alpha, beta, agent,
                                                                     outsider):
    """Embedded, compact swaps the collection and stops Chroma's engine for the vacuum:
    recall elsewhere and writes to the namespace wait, then succeed; no write is lost."""
    mine = _store(agent, "Alpha's badge reader is by the lift")
    theirs = _store(outsider, "Beta's badge reader is at reception")
    store = get_vector_store()
    vector, their_vector = (store.embeddings(alpha, [mine])[mine],
                            store.embeddings(beta, [theirs])[theirs])
    errors: list[BaseException] = []
    written: list[str] = []
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            try:
                assert store.query(beta, their_vector, 1, None)[0].id == theirs
                extra = f"extra-{len(written)}"
                store.upsert(alpha, [extra], vector.reshape(1, -1), [{"agent_id": "x"}],
                             fresh=True)
                written.append(extra)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        for _ in range(3):
            store.compact(alpha)
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert written and store.all_ids(alpha) == {mine, *written}


def test_disk_residue_is_unknown_with_a_chroma_server():
    if not settings.CHROMA_URL:
        assert chroma_files.disk_residue([str(uuid.uuid4())]) == 0
    else:
        assert chroma_files.disk_residue([str(uuid.uuid4())]) is None


@EMBEDDED_ONLY
def test_compaction_zeroes_the_unused_capacity_of_the_hnsw_files(alpha, beta, agent):
    """hnswlib allocates an index's capacity with malloc and persists all of it: the slots
    past its element count hold whatever the process's heap held before, a freed index's
    vectors included (seen: an erased vector in the fresh collection's data_level0.bin,
    when another namespace's large index had been freed earlier in the process). With the
    engine stopped, a compaction (of any namespace) zeroes those slots in every segment's
    files; the index still answers."""
    kept = _store(agent, "The lift is serviced on Mondays")
    store = get_vector_store()
    store.compact(alpha)  # engine stopped and started: the files are written
    [directory] = [d for d in _segment_dirs(store.collection_name(alpha))
                   if (d / "data_level0.bin").exists()]
    data = directory / "data_level0.bin"
    layout = chroma_files.hnsw_layout(directory)
    assert layout is not None and layout.capacity * layout.element_size == data.stat().st_size
    used = layout.count * layout.element_size
    assert used < data.stat().st_size, "no unused capacity to test"
    planted = np.full(8, 0.123, dtype=np.float32)
    with data.open("r+b") as handle:  # what a reused heap block leaves
        handle.seek(used + layout.element_size // 2)
        handle.write(planted.tobytes())
    assert _files_holding(planted)

    store.compact(beta)

    assert _files_holding(planted) == []
    assert chroma_files.unused_capacity_bytes() == 0
    recalled = agent.post("/api/v1/recall", {"query": "when is the lift serviced"}).json()
    assert recalled["results"][0]["id"] == kept


@EMBEDDED_ONLY
def test_the_process_that_opens_chroma_hands_out_no_stale_memory(alpha):
    """M_PERTURB is set when the embedded client is made: a block freed and handed out
    again holds the fill byte, not what was written into it before."""
    get_vector_store().count(alpha)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 4096
    block = libc.malloc(size)
    ctypes.memset(block, 0x77, size)
    libc.free(block)
    again = libc.malloc(size)
    try:
        held = ctypes.string_at(again, size)
    finally:
        libc.free(again)
    assert held == bytes([chroma_files.PERTURB_BYTE ^ 0xFF]) * size
