#!/usr/bin/env python
"""A server holding many namespaces: startup, RSS, open files, recall, create/delete.

A small namespace keeps its vectors in the small index and its keywords in memory (no
Chroma collection, no FTS5 table); a large one has its own of each. This bench measures
whether that layout holds at 10,000 small namespaces (100 memories each) and at 10
large ones (20,000 each), the way a client sees it: a real Daphne on a fresh data
directory, namespaces and keys made through the system-admin REST routes, memories
stored through ``POST /api/v1/memories/batch`` with each namespace's own key.

Recall is compared with a second server holding one namespace of the same size,
running at the same time, in interleaved blocks of queries (the two never run at once,
and load on the machine falls on both alike), so the ratio is from one run on one machine.

The embedder is a flag: ``hash`` (bench/hash_embedder.py, default) measures the layout
without an hour of MiniLM; ``minilm`` is the server's default model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

try:
    from bench.corpus import generate_memories, generate_queries
    from bench.tenants_report import chart, print_summary, summarise
    from bench.tenants_server import Server, sample
except ImportError:  # run as a script, bench/ is sys.path[0]
    from corpus import generate_memories, generate_queries
    from tenants_report import chart, print_summary, summarise
    from tenants_server import Server, sample

RESULTS = Path(__file__).resolve().parent / "results"
EMBEDDERS = {"hash": "bench.hash_embedder.HashEmbedder", "minilm": "minilm-onnx"}
WARMUP, BLOCK = 20, 10
Series = Callable[[str], httpx.Response]


# --- timing --------------------------------------------------------------------------------

def stats_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ms = np.asarray(samples) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "mean": float(ms.mean()),
            "count": len(samples)}


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _stages(response: httpx.Response, into: dict[str, list[float]]) -> None:
    for part in response.headers.get("server-timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            into.setdefault(name, []).append(float(duration) / 1000)


def interleave(series: dict[str, Series], queries: list[str]) -> dict[str, Any]:
    """Each series answers every query; blocks of BLOCK queries rotate through the series
    (order shifted each block), so drift in the machine's load falls on all alike."""
    warm = generate_queries(WARMUP, seed=7)
    for call in series.values():
        for q in warm:
            call(q)
    latencies: dict[str, list[float]] = {name: [] for name in series}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in series}
    names = list(series)
    blocks = range(0, len(queries), BLOCK)
    for b, start in enumerate(tqdm(blocks, desc="recall (interleaved)", unit="block")):
        for name in names[b % len(names):] + names[:b % len(names)]:
            for q in queries[start:start + BLOCK]:
                began = time.perf_counter()
                response = series[name](q)
                latencies[name].append(time.perf_counter() - began)
                _stages(response, stages[name])
    return {name: {**stats_ms(latencies[name]),
                   "server_timing": {s: stats_ms(v) for s, v in stages[name].items()}}
            for name in names}


# --- phases --------------------------------------------------------------------------------
# Each phase writes into the section's report as it goes, and a failure (EMFILE, a 500, a
# server that died) ends the loop with what was reached recorded: at 10,000 namespaces
# where it breaks is the finding.

def _failure(server: Server, exc: Exception, **where: Any) -> dict[str, Any]:
    failure: dict[str, Any] = {**where, "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
    try:
        failure["sample"] = sample(server)
    except Exception as inner:  # the server is gone: say so
        failure["sample_error"] = repr(inner)
    tqdm.write(f"{server.name}: failed at {where}: {failure['error'][:300]}")
    return failure


def populate(server: Server, slugs: list[str], size: int, batch: int, every: int,
             seed_base: int, out: dict[str, Any], desc: str) -> dict[str, str]:
    """Create each namespace, its key and ``size`` memories; sample the server every
    ``every`` namespaces into ``out``. Returns the keys of the namespaces made."""
    keys: dict[str, str] = {}
    times: dict[str, list[float]] = {"create_namespace_and_key": [], "store": []}
    out.update(samples=[sample(server, namespaces=0, elapsed_s=0.0)], timing_per_window=[])
    started = window = time.perf_counter()
    progress = tqdm(slugs, desc=desc, unit="ns")
    for n, slug in enumerate(progress, 1):
        try:
            began = time.perf_counter()
            key = server.create_namespace(slug)
            times["create_namespace_and_key"].append(time.perf_counter() - began)
            memories = generate_memories(size, seed=seed_base + n)
            times["store"].append(timed(lambda k=key, m=memories: server.store(k, m, batch)))
            keys[slug] = key
        except (RuntimeError, httpx.HTTPError) as exc:
            out["failure"] = _failure(server, exc, namespace=n)
            break
        if n % every == 0 or n == len(slugs):
            now, since = time.perf_counter(), n - out["samples"][-1]["namespaces"]
            out["samples"].append(sample(server, namespaces=n, elapsed_s=now - started,
                                         window_ns_per_s=since / (now - window)))
            out["timing_per_window"].append(
                {"namespaces": n, **{op: stats_ms(v[-since:]) for op, v in times.items()}})
            window = now
            progress.set_postfix(rss_mb=f"{out['samples'][-1]['rss_mb']:.0f}",
                                 fds=out["samples"][-1]["open_files"])
    out.update(total_s=time.perf_counter() - started, timing={op: stats_ms(v) for op, v in times.items()})
    return keys


def touch_all(server: Server, keys: dict[str, str], every: int, out: dict[str, Any]) -> None:
    """One recall in every namespace after a restart (a server that serves all its
    tenants), sampling as populate does: what reads alone make the process hold. A
    refused recall is counted and the sweep goes on; a server that died ends it."""
    latencies: list[float] = []
    out.update(samples=[sample(server, namespaces_recalled=0)], refused=0)
    query = generate_queries(1, seed=11)[0]
    for n, key in enumerate(tqdm(keys.values(), desc="recall in every namespace", unit="ns"), 1):
        try:
            latencies.append(timed(lambda k=key: server.recall(k, query)))
        except (RuntimeError, httpx.HTTPError) as exc:
            if server.proc is None or server.proc.poll() is not None:
                out["failure"] = _failure(server, exc, namespaces_recalled=n)
                break
            out["refused"] += 1
            if "first_refused" not in out:
                out["first_refused"] = _failure(server, exc, namespaces_recalled=n)
        if n % every == 0 or n == len(keys):
            out["samples"].append(sample(server, namespaces_recalled=n, refused=out["refused"]))
    out["first_recall"] = stats_ms(latencies)


def churn(server: Server, existing: list[str], count: int, size: int, batch: int,
          out: dict[str, Any]) -> None:
    """Namespace lifecycle through the product's routes: create (+key), fill, delete; then
    delete ``count`` of the namespaces populated earlier. Deleted namespaces' Chroma
    segment directories are counted in the samples (``chroma_segment_dirs``)."""
    times: dict[str, list[float]] = {"create_namespace_and_key": [], "store": [], "delete_new": [],
                                     "delete_existing": []}
    out["before"] = sample(server)
    for i in tqdm(range(count), desc="create+fill+delete", unit="ns"):
        slug, memories = f"churn{i:05d}", generate_memories(size, seed=i)
        began = time.perf_counter()
        key = server.create_namespace(slug)
        times["create_namespace_and_key"].append(time.perf_counter() - began)
        times["store"].append(timed(lambda k=key, m=memories: server.store(k, m, batch)))
        times["delete_new"].append(timed(lambda s=slug: server.delete_namespace(s)))
    for slug in tqdm(existing[:count], desc="delete existing", unit="ns"):
        times["delete_existing"].append(timed(lambda s=slug: server.delete_namespace(s)))
    out.update(timing={op: stats_ms(v) for op, v in times.items()}, after=sample(server))


def _restart(server: Server, out: dict[str, Any]) -> None:
    server.stop()
    out["restart"] = {"startup_s": server.start()}
    out["restart"]["after_start"] = sample(server)


def many_namespaces(args: argparse.Namespace, server: Server, base: Server, base_key: str,
                    out: dict[str, Any]) -> None:
    """Phases 2-5: populate, restart, recall (interleaved with ``base``), create/delete."""
    slugs = [f"t{i:05d}" for i in range(args.namespaces)]
    out["populate"] = {}
    keys = populate(server, slugs, args.per_namespace, args.batch, args.sample_every, 1000,
                    out["populate"], "populate")
    _restart(server, out)
    made = list(keys)
    rng, queries = random.Random(5), generate_queries(args.queries, seed=43)
    order = rng.sample(made, len(made))  # each query a different namespace while they last
    picks = iter(order * (len(queries) // len(order) + 2))
    one = keys[made[len(made) // 2]]
    out["recall"] = interleave({
        "one_namespace_server": lambda q: base.recall(base_key, q),
        "random_small_namespace": lambda q: server.recall(keys[next(picks)], q),
        "same_small_namespace": lambda q: server.recall(one, q),
    }, queries)
    out["recall"]["after"] = sample(server)
    if args.touch_all:
        out["touch_all"] = {}
        touch_all(server, keys, args.sample_every, out["touch_all"])
    out["create_delete"] = {}
    churn(server, order, min(args.churn, len(order)), args.per_namespace, args.batch,
          out["create_delete"])


def large_namespaces(args: argparse.Namespace, server: Server, base: Server, base_key: str,
                     out: dict[str, Any]) -> None:
    """Phase 6: a few large namespaces and one small one on one server; recall in the
    small one, across the large ones and in one large one, interleaved with the
    one-namespace server."""
    slugs = [f"big{i:02d}" for i in range(args.large_namespaces)]
    queries = generate_queries(args.queries, seed=43)
    out["populate"] = {}
    keys = populate(server, slugs, args.large_size, args.batch, 1, 5000, out["populate"],
                    "large namespaces")
    first = keys[slugs[0]]
    small_key = server.create_namespace("small")
    server.store(small_key, generate_memories(args.per_namespace, seed=1), args.batch)
    _restart(server, out)
    rotation = iter(list(keys.values()) * (len(queries) + WARMUP))
    out["recall"] = interleave({
        "one_namespace_server": lambda q: base.recall(base_key, q),
        "small_namespace": lambda q: server.recall(small_key, q),
        "large_namespaces_rotating": lambda q: server.recall(next(rotation), q),
        "same_large_namespace": lambda q: server.recall(first, q),
    }, queries)
    out["recall"]["after"] = sample(server)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Quick run: .venv/bin/python bench/tenants.py --namespaces 200 --per-namespace 20 "
               "--large-namespaces 2 --large-size 2000 --queries 60 --churn 20 --sample-every 50 "
               "--output /tmp/tenants.json")
    add = parser.add_argument
    add("--namespaces", type=int, default=10_000, help="small namespaces on one server (0 skips)")
    add("--per-namespace", type=int, default=100,
        help="memories per small namespace and in the one-namespace server (100)")
    add("--large-namespaces", type=int, default=10, help="large namespaces on another server (0 skips)")
    add("--large-size", type=int, default=20_000, help="memories per large namespace (20000)")
    add("--queries", type=int, default=300, help="timed recalls per series (300)")
    add("--churn", type=int, default=100,
        help="namespaces created, filled and deleted; as many existing ones deleted (100)")
    add("--sample-every", type=int, default=1000, help="sample the server every N namespaces (1000)")
    add("--no-touch-all", dest="touch_all", action="store_false",
        help="skip the recall in every namespace after the restart")
    add("--embedder", choices=sorted(EMBEDDERS), default="hash",
        help="hash: bench/hash_embedder.py, the layout only (default); minilm: the real model")
    add("--nofile", type=int, help="the servers' soft RLIMIT_NOFILE (default: inherited)")
    add("--batch", type=int, default=1000, help="memories per batch request, max 1000 (1000)")
    add("--start-timeout", type=float, default=1800, help="seconds to wait for /readiness (1800)")
    add("--data-dir", type=Path, help="where the servers' data dirs go (default: a new temp dir)")
    add("--keep-data", action="store_true", help="keep the data dirs at the end")
    add("--output", type=Path, default=RESULTS / "tenants.json",
        help="JSON report; the PNG goes next to it (default bench/results/tenants.json)")
    add("--check", action="store_true", help="exit 1 if a target fails or a section broke")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000")
    if min(args.per_namespace, args.sample_every, args.large_size) < 1 or args.queries < BLOCK:
        parser.error("--per-namespace, --large-size, --sample-every >= 1; --queries >= 10")
    if min(args.namespaces, args.large_namespaces, args.churn) < 0:
        parser.error("counts must be >= 0")
    return args


def run_section(name: str, phases: Callable[..., None], args: argparse.Namespace, env: dict[str, str],
                root: Path, base: Server, base_key: str) -> dict[str, Any]:
    """A fresh server for one layout; what the phases reached, and the error that ended them."""
    server = Server(name, root / name, env, args.start_timeout, args.nofile)
    out: dict[str, Any] = {}
    try:
        server.data_dir.mkdir()
        server.setup()
        out["first_start_s"] = server.start()
        phases(args, server, base, base_key, out)
    except Exception as exc:  # recorded with everything measured before it
        out["error"] = f"{type(exc).__name__}: {str(exc)[:3000]}"
        tqdm.write(f"{name}: {out['error'][:500]}")
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="mw-bench-tenants-"))
    root.mkdir(parents=True, exist_ok=True)
    # No rate limit (the system-admin key makes two requests per namespace) and quiet logs
    # (a million requests logged at INFO would be gigabytes).
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_RATE_LIMIT": "", "MEMORYWEB_EMBEDDER": EMBEDDERS[args.embedder]}
    load_before, started = os.getloadavg(), time.perf_counter()
    base = Server("one", root / "one", env, args.start_timeout, args.nofile)
    report: dict[str, Any] = {}
    try:
        base.data_dir.mkdir()
        base.setup()
        report["one_namespace_server"] = {"startup_s": base.start()}
        base_key = base.create_namespace("solo")
        base.store(base_key, generate_memories(args.per_namespace, seed=1), args.batch)
        report["one_namespace_server"]["after_store"] = sample(base)
        if args.namespaces:
            report["many"] = run_section("many", many_namespaces, args, env, root, base, base_key)
        if args.large_namespaces:
            report["large"] = run_section("large", large_namespaces, args, env, root, base, base_key)
        report["one_namespace_server"]["at_end"] = sample(base)
    finally:
        base.stop()
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    ratios = summarise(report)
    checks = {"many": ("random_small_namespace", "same_small_namespace"), "large": ("small_namespace",)}
    targets = {f"{section}_{name}_p95_within_20pct_of_one_namespace":
               (ratios[section][f"{name}_p95_over_one_namespace"] or 99) <= 1.2
               for section, names in checks.items() if section in ratios for name in names}
    targets.update({f"{section}_ran_to_the_end": "error" not in report[section]
                    for section in ("many", "large") if section in report})
    if "touch_all" in report.get("many", {}):
        sweep = report["many"]["touch_all"]
        targets["many_every_namespace_served"] = not sweep.get("refused") and "failure" not in sweep
    full = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "parameters": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                       "embedder_setting": EMBEDDERS[args.embedder], "k": 10, "warmup": WARMUP,
                       "block": BLOCK, "rate_limit": "off", "log_level": "WARNING"},
        "wall_s": time.perf_counter() - started,
        "notes": [
            f"Embedder {args.embedder} ({EMBEDDERS[args.embedder]}); 'hash' measures the storage "
            "layout, not the model (MiniLM adds ~3-5 ms to every recall).",
            "What each phase and field is: bench/README.md, section tenants.py.",
        ],
        **report, "ratios": ratios,
        "targets": {name: "pass" if ok else "fail" for name, ok in targets.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(full, indent=2) + "\n")
    chart(full, args.output.with_suffix(".png"))
    print_summary(full)
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")
    return 1 if args.check and not all(targets.values()) else 0



if __name__ == "__main__":
    sys.exit(main())
