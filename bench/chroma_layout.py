"""Where a small namespace's vectors could live: embedded Chroma's options, measured bare.

Issue 19 asks for 10,000 namespaces with recall in a small one within 20% of a server
holding one namespace, and suggests "shared collections with a namespace filter for small
tenants". bench/tenants.py found a collection per namespace too costly cold (Chroma loads
a collection on its first operation, and holds at most ~200 of them: docs/operations.md).
This bench measures, with no server in the way, what each layout costs one query:

* ``shared_filtered``: one collection holding ``--namespaces`` x ``--per-namespace``
  records, a ``where={"ns": …}`` filter naming one namespace (results checked against a
  brute-force pass: every hit in the namespace, the same top);
* ``shared_unfiltered``: the same collection without a filter (what HNSW costs);
* ``own_warm`` / ``own_cold``: a collection of ``--per-namespace`` records of its own,
  already loaded by this process, or asked for the first time (``get_collection`` and
  the query; Chroma loads the collection then);
* ``sql_brute_force``: the alternative of keeping the vectors beside SQL: the
  namespace's rows read from a SQLite table (a 1,536-byte blob each, by a
  ``(namespace, id)`` index) and scored with one numpy product.

The shared collection is measured at each size in ``--sizes`` (namespaces per collection),
so the chart shows how a filtered query grows with the records it must pass over.
Random unit vectors (latency only); 384 dimensions, cosine, as the server's collections.

Run: ``.venv/bin/python bench/chroma_layout.py`` (~3 minutes; JSON and PNG to
bench/results/chroma_layout.*). Smoke: ``--sizes 10,100 --queries 40 --output /tmp/cl.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DIM, N_RESULTS, OWN = 384, 50, 40


def stats_ms(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "mean": float(ms.mean()), "count": len(samples)}


def units(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed(work, reps: int) -> dict[str, float]:
    samples = []
    for i in range(reps):
        started = time.perf_counter()
        work(i)
        samples.append(time.perf_counter() - started)
    return stats_ms(samples)


def shared_collection(client, namespaces: int, per: int, rng: np.random.Generator):
    """One collection of namespaces x per records, each tagged with its namespace."""
    collection = client.create_collection(f"shared_{namespaces}",
                                          configuration={"hnsw": {"space": "cosine"}})
    total, batch = namespaces * per, 5000
    for start in range(0, total, batch):
        stop = min(start + batch, total)
        collection.add(ids=[f"s{namespaces}_{i}" for i in range(start, stop)],
                       embeddings=units(rng, stop - start),
                       metadatas=[{"ns": i // per} for i in range(start, stop)])
    return collection


def check_filtered(collection, namespaces: int, query: np.ndarray) -> bool:
    """A filtered query returns the namespace's own records only, and its true top."""
    ns = namespaces // 2
    got = collection.query(query_embeddings=query[None, :], n_results=N_RESULTS,
                           where={"ns": ns}, include=["distances", "metadatas"])
    everything = collection.get(where={"ns": ns}, include=["embeddings"])
    order = np.argsort(-(np.asarray(everything["embeddings"]) @ query))[:N_RESULTS]
    truth = {everything["ids"][i] for i in order}
    return all(m["ns"] == ns for m in got["metadatas"][0]) and truth == set(got["ids"][0])


def sql_store(path: Path, namespaces: int, per: int, rng: np.random.Generator) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE v (id TEXT PRIMARY KEY, ns INTEGER, vec BLOB)")
    db.execute("CREATE INDEX v_ns ON v (ns, id)")
    for ns in range(namespaces):
        db.executemany("INSERT INTO v VALUES (?, ?, ?)",
                       [(f"q{ns}_{j}", ns, row.tobytes()) for j, row in enumerate(units(rng, per))])
    db.commit()
    return db


def sql_query(db: sqlite3.Connection, ns: int, query: np.ndarray) -> list[str]:
    rows = db.execute("SELECT id, vec FROM v WHERE ns = ?", (ns,)).fetchall()
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), DIM)
    top = np.argsort(-(matrix @ query))[:N_RESULTS]
    return [rows[i][0] for i in top]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import chromadb

    rng = np.random.default_rng(42)
    pick = random.Random(7)
    queries = units(rng, args.queries)
    client = chromadb.PersistentClient(path=str(work / "chroma"))
    report: dict[str, Any] = {"shared": []}
    for size in args.sizes:
        started = time.perf_counter()
        collection = shared_collection(client, size, args.per_namespace, rng)
        populate_s = time.perf_counter() - started
        entry = {
            "namespaces": size, "records": size * args.per_namespace, "populate_s": populate_s,
            "filtered": timed(lambda i, c=collection, s=size: c.query(
                query_embeddings=queries[i % len(queries)][None, :], n_results=N_RESULTS,
                where={"ns": pick.randrange(s)},
                include=["distances"]), args.queries),
            "unfiltered": timed(lambda i, c=collection: c.query(
                query_embeddings=queries[i % len(queries)][None, :], n_results=N_RESULTS,
                include=["distances"]), args.queries),
            "filtered_exact": check_filtered(collection, size, queries[0]),
        }
        report["shared"].append(entry)
        print(f"shared, {size} namespaces ({entry['records']:,} records): filtered p50 "
              f"{entry['filtered']['p50']:.2f} ms, unfiltered {entry['unfiltered']['p50']:.2f} ms, "
              f"exact {entry['filtered_exact']}", flush=True)
    own = []
    for i in range(OWN):
        collection = client.create_collection(f"own_{i}", configuration={
            "hnsw": {"space": "cosine", "sync_threshold": 1}})  # as the server keeps small ones
        collection.add(ids=[f"o{i}_{j}" for j in range(args.per_namespace)],
                       embeddings=units(rng, args.per_namespace))
        own.append(collection)
    del client, own
    # A new process's view: nothing loaded yet (Chroma keeps one engine per process and
    # path, so the first operation on each collection is what "cold" measures).
    child = subprocess.run([sys.executable, __file__, "--own-collections", str(work / "chroma")],
                           capture_output=True, text=True, check=True)
    report.update(json.loads(child.stdout))
    db = sql_store(work / "vectors.sqlite3", max(args.sizes), args.per_namespace, rng)
    report["sql_brute_force"] = timed(lambda i: sql_query(
        db, pick.randrange(max(args.sizes)), queries[i % len(queries)]), args.queries)
    report["sql_brute_force"]["namespaces_in_table"] = max(args.sizes)
    print(f"own collection: cold {report['own_cold']['p50']:.2f} ms, warm "
          f"{report['own_warm']['p50']:.2f} ms; SQL + numpy over {args.per_namespace} "
          f"vectors: {report['sql_brute_force']['p50']:.2f} ms (p50)", flush=True)
    return report


def own_collections(path: str) -> dict[str, Any]:
    """In this (new) process: each ``own_*`` collection queried for the first time (cold),
    then again (warm); ``get_collection`` counted in both."""
    import chromadb

    client = chromadb.PersistentClient(path=path)
    rng = np.random.default_rng(3)
    measured = {}
    for series in ("own_cold", "own_warm"):
        measured[series] = timed(lambda i: client.get_collection(f"own_{i}").query(
            query_embeddings=units(rng, 1), n_results=N_RESULTS, include=["distances"]), OWN)
    return measured


def write_report(report: dict[str, Any], output: Path, draw) -> None:
    """The JSON report, and the chart ``draw`` makes of it next to it (PNG)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    png = output.with_suffix(".png")
    draw(report, png)
    print(f"wrote {output} and {png}")


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    records = [e["records"] for e in report["shared"]]
    ax.plot(records, [e["filtered"]["p50"] for e in report["shared"]], "o-",
            label="shared collection, filtered to one namespace (p50)")
    ax.plot(records, [e["unfiltered"]["p50"] for e in report["shared"]], "s--",
            label="shared collection, no filter (p50)")
    for key, label, style in (("own_cold", "own collection, first query (cold)", ":"),
                              ("own_warm", "own collection, loaded (warm)", "-."),
                              ("sql_brute_force", "vectors in SQLite + numpy", "--")):
        ax.axhline(report[key]["p50"], linestyle=style, color="grey" if key != "own_cold" else "red",
                   label=f"{label}: {report[key]['p50']:.2f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records in the shared collection (namespaces of "
                  f"{report['parameters']['per_namespace']})")
    ax.set_ylabel("query latency, ms (log)")
    ax.set_title(f"A small namespace's vector query in embedded Chroma {report['chromadb']}, by layout")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--sizes", default="10,100,1000", help="namespaces in the shared "
                        "collection, comma-separated (10,100,1000)")
    parser.add_argument("--per-namespace", type=int, default=100, help="records per namespace (100)")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per series (200)")
    parser.add_argument("--output", type=Path, default=RESULTS / "chroma_layout.json",
                        help="JSON report; the PNG goes next to it")
    parser.add_argument("--own-collections", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args(argv)
    if args.own_collections:
        print(json.dumps(own_collections(args.own_collections)))
        return 0
    args.sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mw-chroma-layout-"))
    try:
        import chromadb

        report = run(args, work)
        report.update(timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
                      chromadb=chromadb.__version__, parameters={
                          "sizes": args.sizes, "per_namespace": args.per_namespace,
                          "queries": args.queries, "n_results": N_RESULTS, "dimension": DIM})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(report, args.output, chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
