"""The in-memory keyword index's search, full pass against bounded top-k, in-process.

For each namespace size in ``--n``: bench/corpus.py's memories, each with its session's
previous memory as conversation context (as ingest links them), loaded into one
``NamespaceIndex`` (apps/memories/keyword_index.py); bench/corpus.py's queries built as
recall builds them (``lexical.build_query``, then the terms in more than
``MEMORYWEB_LEXICAL_MAX_DF`` of the memories left out as ``lexical.prune_common`` does,
counted here from the index instead of FTS5's vocabulary: the same counts) and turned
into index terms. Each query then runs ``NamespaceIndex.search`` with ``exhaustive=True``
(every posting of every term scored: the engine before keyword_topk.py) and without
(keyword_topk.py's bounded top), interleaved query by query, the order alternating.
Reported per engine: p50/p95 (ms), postings scored per query (for the bounded
path, the postings it looked at where it bounded the query, else the full pass's;
``queries_bounded`` counts the former); how many results differ (must be 0: scores compared exactly); the
ratio of p50s, last size over first.

    .venv/bin/python bench/keyword_topk.py --n 10000,100000 --output /tmp/keyword_topk.json

No database, embedder or server: the index alone (Django is set up for the tokenizer's
settings only, in a temporary data directory). Writes JSON and a PNG next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup(data_dir: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "memoryweb.settings"
    os.environ["MEMORYWEB_DATA_DIR"] = data_dir
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO))
    import django

    from apps.core.conf import prepare_data_dir

    prepare_data_dir()
    django.setup()


def _rows(n: int) -> list[tuple[str, str, str | None]]:
    from bench.corpus import generate_memories

    last: dict[str, str] = {}
    rows = []
    for i, item in enumerate(generate_memories(n)):
        session = item["session_id"]
        rows.append((f"{i:032x}", item["content"], last.get(session) if session else None))
        if session:
            last[session] = item["content"]
    return rows


def _queries(index, count: int) -> list[list[str]]:
    from django.conf import settings

    from apps.memories import lexical
    from apps.memories.keyword_index import query_terms
    from bench.corpus import generate_queries

    share, total, built = settings.MEMORYWEB_LEXICAL_MAX_DF, len(index), []
    for text in generate_queries(count):
        terms = lexical.build_query(text).terms
        if len(terms) >= 2 and total >= lexical.PRUNE_FROM_ROWS:  # lexical.prune_common
            stems = {t: query_terms([t]) for t in terms}
            frequency = {t: max((index.document_frequency(s) for s in stems[t] or ()), default=0)
                         for t in terms}
            keep = [t for t in terms if frequency[t] <= share * total]
            terms = keep or sorted(terms, key=frequency.__getitem__)[:2]
        found = query_terms(terms)
        if found:
            built.append(found)
    return built


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "mean": round(statistics.fmean(ordered), 3)}


def run(n: int, queries: int, repeats: int, limit: int, weight: float) -> dict:
    from apps.memories.keyword_index import NamespaceIndex

    started = time.perf_counter()
    index = NamespaceIndex(1)
    index.load(_rows(n))
    build_s = time.perf_counter() - started
    built = _queries(index, queries)
    times: dict[str, list[float]] = {"full": [], "bounded": []}
    scored: dict[str, list[int]] = {"full": [], "bounded": []}
    differ = 0
    for repeat in range(repeats):
        for i, terms in enumerate(built):
            found = {}
            for mode in (("full", "bounded") if (i + repeat) % 2 else ("bounded", "full")):
                t0 = time.perf_counter()
                found[mode] = index.search(terms, weight, limit, exhaustive=mode == "full")
                times[mode].append((time.perf_counter() - t0) * 1000)
                if repeat == 0:
                    scored[mode].append(index.scored)
            differ += found["full"] != found["bounded"]
    bounded = sum(b < f for b, f in zip(scored["bounded"], scored["full"], strict=True))
    return {"n": n, "queries": len(built), "repeats": repeats, "limit": limit, "weight": weight,
            "build_s": round(build_s, 1),
            "full_ms": _percentiles(times["full"]), "bounded_ms": _percentiles(times["bounded"]),
            "postings_scored_mean": {mode: round(statistics.fmean(v)) for mode, v in scored.items()},
            "queries_bounded": bounded, "results_differing": differ}


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["n"] for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, colour in (("full", "tab:red"), ("bounded", "tab:blue")):
        ax.plot(sizes, [r[f"{mode}_ms"]["p50"] for r in results], "o-", color=colour, label=f"{mode} p50")
        ax.plot(sizes, [r[f"{mode}_ms"]["p95"] for r in results], "o--", color=colour, label=f"{mode} p95")
    ax.set_xscale("log")
    ax.set_xlabel("memories in the namespace")
    ax.set_ylabel("NamespaceIndex.search (ms)")
    ax.set_title("In-memory keyword index: full pass vs bounded top-k")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--n", default="10000,100000", help="namespace sizes, comma separated")
    parser.add_argument("--queries", type=int, default=200, help="distinct queries (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the queries (default 5)")
    parser.add_argument("--limit", type=int, default=10, help="results asked (default 10)")
    parser.add_argument("--weight", type=float, default=None,
                        help="context weight (default MEMORYWEB_LEXICAL_CONTEXT_WEIGHT)")
    parser.add_argument("--min-postings", type=int, default=None,
                        help="keyword_topk.MIN_POSTINGS: bound only queries of at least this many "
                             "postings (default the module's; 0: every query)")
    parser.add_argument("--max-df", type=float, default=None,
                        help="the pruning share (default MEMORYWEB_LEXICAL_MAX_DF; 1.0: no pruning)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "keyword_topk.json",
                        help="JSON written here, the PNG beside it (default bench/results/keyword_topk.json)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mw-keyword-topk-") as data_dir:
        _setup(data_dir)
        from django.conf import settings

        from apps.memories import keyword_topk

        if args.min_postings is not None:
            keyword_topk.MIN_POSTINGS = args.min_postings
        if args.max_df is not None:
            settings.MEMORYWEB_LEXICAL_MAX_DF = args.max_df
        weight = settings.MEMORYWEB_LEXICAL_CONTEXT_WEIGHT if args.weight is None else args.weight
        settings_used = {"min_postings": keyword_topk.MIN_POSTINGS,
                         "max_df": settings.MEMORYWEB_LEXICAL_MAX_DF}
        results = []
        for n in (int(part) for part in args.n.split(",")):
            result = run(n, args.queries, args.repeats, args.limit, weight)
            print(json.dumps(result), flush=True)
            results.append(result)
    first, last = results[0], results[-1]
    ratios = {mode: round(last[f"{mode}_ms"]["p50"] / first[f"{mode}_ms"]["p50"], 2)
              for mode in ("full", "bounded")}
    report = {"results": results, "p50_ratio_last_over_first": ratios, "settings": settings_used,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, args.output.with_suffix(".png"))
    print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
