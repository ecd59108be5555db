#!/usr/bin/env python
"""A server holding many namespaces: startup, RSS, open files, recall, create/delete.

Each namespace has its own Chroma collection and its own SQLite FTS5 table; this bench
measures whether that layout holds at 10,000 small namespaces (100 memories each) and
at 10 large ones (20,000 each), the way a client sees it: a real Daphne on a fresh data
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
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

try:
    from bench.corpus import generate_memories, generate_queries
    from bench.recall_latency import free_port, manage
except ImportError:  # run as a script, bench/ is sys.path[0]
    from corpus import generate_memories, generate_queries
    from recall_latency import free_port, manage

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
EMBEDDERS = {"hash": "bench.hash_embedder.HashEmbedder", "minilm": "minilm-onnx"}
AGENT, WARMUP, BLOCK = "bench-agent", 20, 10
Series = Callable[[str], httpx.Response]


# --- processes ---------------------------------------------------------------------------

class Server:
    """One Daphne on one data directory, as deployed; restartable, with its own client."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], timeout: float,
                 nofile: int | None = None):
        self.name, self.data_dir, self.timeout, self.nofile = name, data_dir, timeout, nofile
        self.env = {**env, "MEMORYWEB_DATA_DIR": str(data_dir)}
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self.admin = ""  # a system-admin key, made before the first start

    def setup(self) -> None:
        manage(self.env, "migrate", "-v0")
        self.admin = manage(self.env, "create_api_key", "--system-admin").splitlines()[-1].strip()

    def start(self) -> float:
        """Start and wait for /readiness 200; the seconds that took."""
        port, log_path = free_port(), self.data_dir / "daphne.log"
        started = time.perf_counter()
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                 "memoryweb.asgi:application"], cwd=REPO, env=self.env, stdout=log, stderr=log,
                preexec_fn=self._limit_files if self.nofile else None)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: daphne exited with {self.proc.returncode}:\n"
                                   f"{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readiness", timeout=5,
                             trust_env=False).status_code == 200:
                    elapsed = time.perf_counter() - started
                    self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                                               trust_env=False)
                    return elapsed
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name}: not ready after {self.timeout:.0f} s")

    def _limit_files(self) -> None:
        """In the child: the soft RLIMIT_NOFILE asked for (Chroma sizes its cache of open
        HNSW indexes from it: a fifth of the limit, four files each)."""
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def call(self, method: str, path: str, key: str, expect: int, body: Any = None) -> httpx.Response:
        assert self.client is not None, "server not started"
        response = self.client.request(method, path, json=body,
                                       headers={"Authorization": f"Bearer {key}"})
        if response.status_code != expect:
            raise RuntimeError(f"{self.name}: {method} {path}: {response.status_code} "
                               f"{response.text[:500]}")
        return response

    def create_namespace(self, slug: str) -> str:
        """A namespace and an agent key of it, through the system-admin REST routes."""
        self.call("POST", "/api/v1/namespaces", self.admin, 201, {"slug": slug})
        return self.call("POST", f"/api/v1/namespaces/{slug}/keys", self.admin, 201,
                         {"role": "agent", "agent_id": AGENT}).json()["key"]

    def store(self, key: str, memories: list[dict[str, Any]], batch: int) -> None:
        for i in range(0, len(memories), batch):
            chunk = memories[i:i + batch]
            body = self.call("POST", "/api/v1/memories/batch", key, 201, {"memories": chunk}).json()
            if body["count"] != len(chunk):
                raise RuntimeError(f"{self.name}: batch stored {body['count']} of {len(chunk)}")

    def delete_namespace(self, slug: str) -> None:
        self.call("DELETE", f"/api/v1/namespaces/{slug}", self.admin, 204)

    def recall(self, key: str, query: str) -> httpx.Response:
        response = self.call("POST", "/api/v1/recall", key, 200, {"query": query, "k": 10})
        if not response.json()["results"]:
            raise RuntimeError(f"{self.name}: no results for {query!r}")
        return response


# --- what the process holds ----------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    """Memory and threads (/proc status) and the soft open-files limit: Chroma keeps up
    to a fifth of that limit of HNSW indexes open, four files each."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            fields[name] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            fields["nofile"] = int(line.split()[3])
    return fields


def _fd_kinds(pid: int, data_dir: Path) -> dict[str, int]:
    """Open descriptors by what they point at: Chroma's files, SQLite's, sockets, other."""
    kinds: dict[str, int] = {}
    chroma, sqlite_files = str(data_dir / "chroma"), ("sqlite3", "sqlite3-wal", "sqlite3-shm")
    for fd in os.scandir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(fd.path)
        except OSError:
            continue  # closed meanwhile
        kind = "socket" if target.startswith("socket:") else "other"
        if target.endswith(sqlite_files):
            kind = "chroma_sqlite" if target.startswith(chroma) else "sqlite"
        elif target.startswith(chroma):
            kind = "chroma_segment"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _disk(path: Path) -> int:
    """Bytes allocated under ``path`` (st_blocks, as du counts them)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _schema(data_dir: Path) -> dict[str, Any]:
    """The SQL schema's size and what it costs a new connection: SQLite parses the whole
    schema on a connection's first statement (and again after any DDL elsewhere)."""
    uri, first = f"file:{data_dir / 'memoryweb.sqlite3'}?mode=ro", []
    for _ in range(3):  # the median of three
        started = time.perf_counter()
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.execute("SELECT 1 FROM tenancy_namespace LIMIT 1").fetchall()
            first.append((time.perf_counter() - started) * 1000)
    first_ms = sorted(first)[1]
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        fts = conn.execute("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%USING fts5(%'").fetchone()[0]
    with closing(sqlite3.connect(f"file:{data_dir / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)) as conn:
        collections = conn.execute("SELECT count(*) FROM collections").fetchone()[0]
    return {"sqlite_master_rows": rows, "fts_tables": fts, "new_connection_first_query_ms": first_ms,
            "chroma_collections": collections}


def sample(server: Server, **extra: Any) -> dict[str, Any]:
    """RSS, threads and open files of the server process, disk and schema of its data dir."""
    assert server.proc is not None
    pid = server.proc.pid
    status, kinds = _status(pid), _fd_kinds(pid, server.data_dir)
    chroma = server.data_dir / "chroma"
    dirs = sum(1 for entry in os.scandir(chroma) if entry.is_dir()) if chroma.exists() else 0
    return {**extra, "rss_mb": status["VmRSS"] / 1024, "hwm_mb": status["VmHWM"] / 1024,
            "rss_anon_mb": status.get("RssAnon", 0) / 1024, "rss_file_mb": status.get("RssFile", 0) / 1024,
            "threads": status["Threads"], "nofile": status.get("nofile"),
            "open_files": sum(kinds.values()), "fd_kinds": kinds, "chroma_segment_dirs": dirs,
            "disk_mb": {"total": _disk(server.data_dir) / 2**20,
                        "chroma": _disk(server.data_dir / "chroma") / 2**20},
            **_schema(server.data_dir)}


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


# --- report --------------------------------------------------------------------------------

def per_thousand(samples: list[dict[str, Any]], x: str, y: Callable[[dict[str, Any]], float]) -> float | None:
    """Growth of ``y`` per 1,000 of ``x`` (least squares over the samples)."""
    points = [(s[x], y(s)) for s in samples if x in s]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    xs, ys = zip(*points, strict=True)
    return float(np.polyfit(xs, ys, 1)[0] * 1000)


def _p95_ratio(recall: dict[str, Any], name: str) -> float | None:
    if name not in recall or "one_namespace_server" not in recall:
        return None
    return recall[name]["p95"] / recall["one_namespace_server"]["p95"]


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the one-namespace server and growth per 1,000 namespaces."""
    out: dict[str, Any] = {}
    many, large = report.get("many") or {}, report.get("large") or {}
    if many:
        populated = many.get("populate", {}).get("samples", [])
        touched = many.get("touch_all", {}).get("samples", [])
        grow = {"rss_mb": lambda s: s["rss_mb"], "open_files": lambda s: s["open_files"],
                "schema_rows": lambda s: s["sqlite_master_rows"], "disk_mb": lambda s: s["disk_mb"]["total"]}
        out["many"] = {
            **{f"{name}_p95_over_one_namespace": _p95_ratio(many.get("recall", {}), name)
               for name in ("random_small_namespace", "same_small_namespace")},
            **{f"populate_{y}_per_1000_namespaces": per_thousand(populated, "namespaces", f)
               for y, f in grow.items()},
            **{f"recall_all_{y}_per_1000_namespaces": per_thousand(touched, "namespaces_recalled", grow[y])
               for y in ("rss_mb", "open_files")}}
    if large:
        out["large"] = {f"{name}_p95_over_one_namespace": _p95_ratio(large.get("recall", {}), name)
                        for name in ("small_namespace", "large_namespaces_rotating", "same_large_namespace")}
    return out


def chart(report: dict[str, Any], path: Path) -> None:
    """RSS and open files against namespaces created (and recalled after a restart); recall
    p95 of every series next to the one-namespace server's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss_ax, fd_ax, sql_ax, bars) = plt.subplots(1, 4, figsize=(21, 4.8))
    many = report.get("many") or {}
    for key, x, label, style in (("populate", "namespaces", "populating", "-o"),
                                 ("touch_all", "namespaces_recalled",
                                  "after the restart and recall phase: a recall in each", "--s")):
        samples = many.get(key, {}).get("samples", [])
        if samples:
            xs = [s[x] for s in samples]
            rss_ax.plot(xs, [s["rss_mb"] for s in samples], style, label=label, markersize=3)
            fd_ax.plot(xs, [s["open_files"] for s in samples], style, label=label, markersize=3)
    populated = many.get("populate", {})
    if populated.get("samples"):
        sql_ax.plot([s["namespaces"] for s in populated["samples"]],
                    [s["new_connection_first_query_ms"] for s in populated["samples"]], "-o",
                    markersize=3, label="new SQLite connection: first query")
        windows = populated.get("timing_per_window", [])
        sql_ax.plot([w["namespaces"] for w in windows],
                    [w["create_namespace_and_key"]["p50"] for w in windows], "--s", markersize=3,
                    label="create namespace + key, p50")
    sql_ax.set_title("What the SQL schema costs (7 entries per namespace)", fontsize=10)
    sql_ax.set_ylabel("ms")
    if "restart" in many:
        for ax, y in ((rss_ax, "rss_mb"), (fd_ax, "open_files")):
            ax.axhline(many["restart"]["after_start"][y], color="grey", lw=0.8, ls=":",
                       label="right after the restart")
    for ax, label in ((rss_ax, "server RSS (MB)"), (fd_ax, "server open files"), (sql_ax, "ms")):
        ax.set_xlabel("namespaces")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    p = report["parameters"]
    rss_ax.set_title(f"RSS, {p['per_namespace']} memories per namespace", fontsize=10)
    limit = many.get("populate", {}).get("samples", [{}])[0].get("nofile") or 0
    fd_ax.set_title(f"Open files (RLIMIT_NOFILE {limit}: Chroma keeps <= {limit // 5} indexes open)",
                    fontsize=10)
    labels, p95s, colors = [], [], []
    for section, color in (("many", "#d95f02"), ("large", "#7570b3")):
        for name, stats in (report.get(section) or {}).get("recall", {}).items():
            if name != "after":
                labels.append(f"{section}: {name.replace('_', ' ')}")
                p95s.append(stats["p95"])
                colors.append("#1b9e77" if name == "one_namespace_server" else color)
    if labels:
        bars.bar_label(bars.bar(range(len(labels)), p95s, color=colors), fmt="%.1f", fontsize=8)
        bars.set_xticks(range(len(labels)), labels, fontsize=7, rotation=35, ha="right")
    bars.set_ylabel("recall p95 (ms), k=10, default mode")
    bars.set_title("Recall p95 (green: the server holding one namespace)", fontsize=10)
    fig.suptitle(f"MemoryWeb, many namespaces: {p['namespaces']:,} x {p['per_namespace']}, "
                 f"{p['large_namespaces']} x {p['large_size']:,}; embedder {p['embedder']}; "
                 f"{report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def _line(label: str, s: dict[str, Any]) -> str:
    return (f"{label}: RSS {s['rss_mb']:.0f} MB, {s['open_files']} open files {s['fd_kinds']}, "
            f"{s['sqlite_master_rows']} schema rows (new connection {s['new_connection_first_query_ms']:.0f} "
            f"ms), {s['chroma_collections']} collections / {s['chroma_segment_dirs']} segment dirs, "
            f"disk {s['disk_mb']['total']:.0f} MB")


def print_summary(report: dict[str, Any]) -> None:
    """The last sample of each phase, the timings, ratios and targets (the rest: the JSON)."""
    for section in ("many", "large"):
        out = report.get(section) or {}
        for phase, s in (("populated", (out.get("populate", {}).get("samples") or [None])[-1]),
                         (f"restarted (ready in {out.get('restart', {}).get('startup_s', 0):.1f} s)",
                          out.get("restart", {}).get("after_start")),
                         ("after the sweep", (out.get("touch_all", {}).get("samples") or [None])[-1]),
                         ("after create/delete", out.get("create_delete", {}).get("after"))):
            if s:
                print(_line(f"{section} {phase}", s))
        timings = {**{f"recall {k}": v for k, v in out.get("recall", {}).items() if k != "after"},
                   **out.get("create_delete", {}).get("timing", {})}
        for op, stats in timings.items():
            print(f"  {section} {op:34} p50 {stats['p50']:7.1f}  p95 {stats['p95']:7.1f} ms")
        problems = [out.get("error"), *(out.get(part, {}).get(what, {}).get("error")
                    for part in ("populate", "touch_all") for what in ("failure", "first_refused"))]
        for problem in filter(None, problems):
            print(f"  {section} FAILED: {problem[:500]}")
    print(json.dumps(report["ratios"], indent=2))
    for name, verdict in report["targets"].items():
        print(f"target {name}: {verdict.upper()}")


if __name__ == "__main__":
    sys.exit(main())
