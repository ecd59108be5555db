"""Keyword stage: the SQL engine (FTS5 bm25) against the in-memory engine, in-process.

For each namespace size in ``--n``: memories from bench/corpus.py (with conversation
context links as ingest makes them: each session turn linked to the one before) go
straight into a fresh SQLite database (memories_memory, then the namespace's FTS5 table
rebuilt from it), then the same queries (bench/corpus.py, built and pruned as recall
does) run through ``lexical.search`` with ``MEMORYWEB_KEYWORD_ENGINE`` "sql" and
"memory", interleaved query by query. Reported: p50/p95 per engine (``lexical.search``
alone: the shared query building and pruning are left out), the memory engine's build
time (the first search of the namespace) and the process's RSS growth over the build,
and how many top-10 lists differ between the engines (0 when the ranking is the same).

    .venv/bin/python bench/keyword_engine.py --n 10000,100000

No embedder and no server: this times the keyword stage only. Writes
bench/results/keyword_engine.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _setup(data_dir: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "memoryweb.settings"
    os.environ["MEMORYWEB_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO))
    import django

    from apps.core.conf import prepare_data_dir

    prepare_data_dir()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ingest(n: int) -> int:
    """A namespace of ``n`` memories, rows and FTS5 table; returns its id."""
    from django.db import transaction

    from apps.memories import lexical
    from apps.memories.models import Memory, content_hash
    from apps.tenancy.models import Namespace
    from bench.corpus import generate_memories

    namespace = Namespace.objects.create(slug=f"kw-{n}-{uuid.uuid4().hex[:6]}")
    last: dict[str, uuid.UUID] = {}
    rows = []
    for item in generate_memories(n):
        pk = uuid.uuid4()
        session = item["session_id"]
        rows.append(Memory(id=pk, namespace=namespace, content=item["content"], kind=item["kind"],
                           tags=item["tags"], session_id=session, agent_id="bench",
                           content_hash=content_hash(item["content"]),
                           context_memory_id=last.get(session) if session else None))
        if session:
            last[session] = pk
    with transaction.atomic():
        for start in range(0, len(rows), 5000):
            Memory.objects.bulk_create(rows[start:start + 5000])
        lexical.rebuild(namespace.pk)
    return namespace.pk


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "mean": round(statistics.fmean(ordered), 3)}


def run(n: int, queries: int, repeats: int) -> dict:
    from django.conf import settings

    from apps.memories import keyword_index_log, lexical
    from bench.corpus import generate_queries

    started = time.perf_counter()
    namespace_id = _ingest(n)
    ingest_s = time.perf_counter() - started
    texts = generate_queries(queries)
    built = [lexical.prune_common(lexical.build_query(t), namespace_id) for t in texts]

    settings.MEMORYWEB_KEYWORD_ENGINE = "memory"
    keyword_index_log.indexes().clear()
    gc.collect()
    rss = _rss_mb()
    started = time.perf_counter()
    lexical.search(namespace_id, built[0], 10)  # builds the namespace's index
    build_s = time.perf_counter() - started
    gc.collect()
    rss_delta = _rss_mb() - rss
    index_mb = keyword_index_log.indexes().synced(namespace_id).nbytes() / 2**20

    timings: dict[str, list[float]] = {"sql": [], "memory": []}
    differ = 0
    for _ in range(repeats):
        for query in built:
            found = {}
            for engine in ("sql", "memory"):
                settings.MEMORYWEB_KEYWORD_ENGINE = engine
                t0 = time.perf_counter()
                found[engine] = lexical.search(namespace_id, query, 10)
                timings[engine].append((time.perf_counter() - t0) * 1000)
            differ += [pk for pk, _ in found["sql"]] != [pk for pk, _ in found["memory"]]
    settings.MEMORYWEB_KEYWORD_ENGINE = "sql"
    return {"n": n, "queries": len(built), "repeats": repeats, "ingest_s": round(ingest_s, 1),
            "sql_ms": _percentiles(timings["sql"]), "memory_ms": _percentiles(timings["memory"]),
            "memory_build_s": round(build_s, 2), "memory_rss_delta_mb": round(rss_delta, 1),
            "memory_index_estimate_mb": round(index_mb, 1),
            "top10_lists_differing": differ, "top10_lists": len(built) * repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="10000,100000",
                        help="namespace sizes, comma-separated (default 10000,100000)")
    parser.add_argument("--queries", type=int, default=200, help="distinct queries (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries (default 3)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "keyword_engine.json")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    _setup(args.data_dir or Path(tempfile.mkdtemp(prefix="mw-bench-keyword-")))
    results = []
    for n in [int(part) for part in args.n.split(",") if part]:
        result = run(n, args.queries, args.repeats)
        print(json.dumps(result), flush=True)
        results.append(result)
    first, last = results[0], results[-1]
    summary = {
        "sql_p50_ratio": round(last["sql_ms"]["p50"] / first["sql_ms"]["p50"], 2),
        "memory_p50_ratio": round(last["memory_ms"]["p50"] / first["memory_ms"]["p50"], 2),
        "between": [first["n"], last["n"]],
    }
    print(json.dumps(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "bench": "keyword_engine", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "in-process lexical.search only (query building and pruning left out); a shared "
                "machine: compare the engines and the sizes, not absolute times",
        "results": results, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
