"""The small index against a Chroma collection of its own, by namespace size.

A namespace's vectors stay in the small index (apps/memories/small_index.py: one SQLite
file, exact brute-force search) until it holds more than ``MEMORYWEB_SMALL_INDEX_LIMIT``
of them, then move to a Chroma collection. This measures one query (50 results, 384
dimensions, cosine) on each side at each size in ``--sizes``, with no server in the way,
to say where that limit belongs:

* ``small_cold``: the collection not in the small index's memory (read from the file,
  decoded, scored: a namespace not asked lately);
* ``small_warm``: decoded already (asked lately);
* ``small_filtered``: warm, with the kind of ``where`` a recall with a filter and a grant
  sends (an agent id and ``kind != summary``; a quarter of the records pass);
* ``chroma_cold`` / ``chroma_warm``: a collection of its own, queried for the first time
  in a new process (Chroma loads it then) or again (bench/chroma_layout.py's child);
* ``top50_overlap_with_chroma``: the share of the small index's (exact) top 50 that
  Chroma's HNSW also returns, 20 queries.

Random unit vectors with the server's filter fields (latency only). Run:
``.venv/bin/python bench/small_index.py`` (~4 minutes; JSON and PNG to
bench/results/small_index.*). Smoke: ``--sizes 50,200 --queries 20 --output /tmp/si.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's modules
    sys.path.insert(0, str(ROOT))

from apps.memories import small_index  # noqa: E402
from apps.memories.small_index import SmallIndex  # noqa: E402

try:
    from bench.chroma_layout import DIM, timed, units, write_report
except ImportError:  # run as a script, bench/ is sys.path[0]
    from chroma_layout import DIM, timed, units, write_report

RESULTS = Path(__file__).resolve().parent / "results"
N_RESULTS = 50
#: Collections per size on each side (the child of bench/chroma_layout.py opens 40).
COLLECTIONS = 40
FILTER = {"$and": [{"agent_id": "a1"}, {"kind": {"$ne": "summary"}}]}


def metadata(k: int) -> dict[str, Any]:
    """Filter fields shaped as the server's (vectorstore.chroma_metadata)."""
    return {"agent_id": f"a{k % 4}", "session_id": f"s{k % 10}",
            "kind": "summary" if k % 20 == 0 else "fact", "created_ts": 1.7e9 + k,
            "event_ts": 1.7e9 + k, "t:project": True}


def measure_size(size: int, queries: np.ndarray, work: Path, rng: np.random.Generator,
                 reps: int) -> dict[str, Any]:
    import chromadb

    index = SmallIndex(work / f"small_{size}")
    client = chromadb.PersistentClient(path=str(work / f"chroma_{size}"))
    metas = [metadata(k) for k in range(size)]
    for c in range(COLLECTIONS):
        vectors, ids = units(rng, size), [f"m{c}_{k}" for k in range(size)]
        index.create(f"c{c}")
        index.upsert(f"c{c}", ids, vectors, metas)
        collection = client.create_collection(f"own_{c}", configuration={
            "hnsw": {"space": "cosine", "sync_threshold": max(size, 100)}})
        for start in range(0, size, 5000):
            collection.add(ids=ids[start:start + 5000], embeddings=vectors[start:start + 5000],
                           metadatas=metas[start:start + 5000])
    # The same top 50 from both sides? The small index is exact; HNSW is approximate.
    overlap = [len({i for i, _ in index.query(f"c{COLLECTIONS - 1}", q, N_RESULTS, None)}
                   & set(collection.query(query_embeddings=q[None, :], n_results=N_RESULTS,
                                          include=[])["ids"][0])) / min(N_RESULTS, size)
               for q in queries[:20]]
    del client, collection

    def cold(i: int) -> None:
        name = f"c{i % COLLECTIONS}"
        index._forget(name)  # as a namespace not asked lately: read from the file
        index.query(name, queries[i % len(queries)], N_RESULTS, None)

    entry: dict[str, Any] = {"size": size, "top50_overlap_with_chroma": float(np.mean(overlap)),
                             "small_cold": timed(cold, reps)}
    # "Warm" is every collection in memory: the cache made to hold them all (the server's
    # holds CACHE_VECTORS, ~200 namespaces of 100; past that a namespace reads cold).
    kept, small_index.CACHE_VECTORS = small_index.CACHE_VECTORS, COLLECTIONS * size
    for c in range(COLLECTIONS):
        index._load(f"c{c}")
    entry["small_warm"] = timed(lambda i: index.query(
        f"c{i % COLLECTIONS}", queries[i % len(queries)], N_RESULTS, None), reps)
    entry["small_filtered"] = timed(lambda i: index.query(
        f"c{i % COLLECTIONS}", queries[i % len(queries)], N_RESULTS, FILTER), reps)
    index.close()
    small_index.CACHE_VECTORS = kept
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "chroma_layout.py"),
                            "--own-collections", str(work / f"chroma_{size}")],
                           capture_output=True, text=True, check=True)
    own = json.loads(child.stdout)
    entry["chroma_cold"], entry["chroma_warm"] = own["own_cold"], own["own_warm"]
    print(f"{size:>6} vectors: small cold {entry['small_cold']['p50']:.2f} / warm "
          f"{entry['small_warm']['p50']:.2f} / filtered {entry['small_filtered']['p50']:.2f} ms; "
          f"Chroma cold {entry['chroma_cold']['p50']:.2f} / warm {entry['chroma_warm']['p50']:.2f} "
          "ms (p50)", flush=True)
    return entry


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    sizes = [e["size"] for e in report["sizes"]]
    for key, label, style in (("small_cold", "small index, not in memory", "o-"),
                              ("small_warm", "small index, in memory", "s-"),
                              ("small_filtered", "small index, in memory, filtered", "^-"),
                              ("chroma_cold", "Chroma collection, first query", "o--"),
                              ("chroma_warm", "Chroma collection, loaded", "s--")):
        ax.plot(sizes, [e[key]["p50"] for e in report["sizes"]], style, label=label)
    ax.axvline(report["limit_default"], color="grey", linestyle=":",
               label=f"MEMORYWEB_SMALL_INDEX_LIMIT default ({report['limit_default']:,})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("vectors in the namespace")
    ax.set_ylabel("one query (50 results), p50 ms (log)")
    ax.set_title(f"A namespace's vector query: small index vs Chroma {report['chromadb']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--sizes", default="100,500,1000,2000,4000",
                        help="vectors per namespace, comma-separated (100,500,1000,2000,4000)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per series (200)")
    parser.add_argument("--output", type=Path, default=RESULTS / "small_index.json",
                        help="JSON report; the PNG goes next to it")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mw-small-index-"))
    rng = np.random.default_rng(42)
    queries = units(rng, args.queries)
    try:
        import chromadb

        from memoryweb.settings_lifecycle import MEMORYWEB_SMALL_INDEX_LIMIT

        report = {"sizes": [measure_size(size, queries, work, rng, args.queries) for size in sizes],
                  "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "chromadb": chromadb.__version__, "limit_default": MEMORYWEB_SMALL_INDEX_LIMIT,
                  "parameters": {"queries": args.queries, "n_results": N_RESULTS,
                                 "dimension": DIM, "collections": COLLECTIONS, "filter": FILTER}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(report, args.output, chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
