#!/usr/bin/env python
"""Recall latency, keyword-stage growth and batch ingest of MemoryWeb, interleaved with the floor.

The floor is the same work with no server: the server's embedder (MiniLMOnnxEmbedder) and a
bare Chroma collection in this process, embedding the query included. The server is a real
Daphne on a fresh data directory, so its numbers are what a client sees. Both start up front
and take turns on the same texts (bench/corpus.py), never running at once, so machine noise
hits both alike:

* ingest goes block by block (--block memories, sent in --batch requests): the floor ingests
  a block, then the server the same block; who goes first alternates per block, so neither
  always gets the warm cache. After each server turn the bench waits for its CPU to go idle.
* at each --checkpoints size ingest pauses and recall is measured query by query: floor,
  server vector mode, server hybrid (the default), the order rotating per query. The per-stage
  breakdown comes from the server's Server-Timing header; outside_app is the client's latency
  minus the app stage (Daphne, HTTP, the client). Server RSS, open files and disk are read too.

Targets (issue 19; --check exits 1 on a fail):
* hybrid recall p95 <= 2x the floor's p95 at every checkpoint;
* keyword (lexical) stage p50 at the largest checkpoint <= 1.5x at the smallest (>= 2 checkpoints);
* server batch ingest >= 80% of the floor's rate over the whole run;
* server ingest rate over the last --window memories >= 80% of the first (n >= 2 windows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

try:
    from bench.corpus import generate_memories, generate_queries
except ImportError:  # run as a script, bench/ is sys.path[0]
    from corpus import generate_memories, generate_queries

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = 20
NAMESPACE, AGENT = "bench", "bench-agent"
SERIES = ("floor", "vector", "hybrid")  # recall series, in the order of the first query
TOTALS = {"app", "service"}  # Server-Timing entries that contain the other stages


def stats_ms(samples: list[float]) -> dict[str, float]:
    """Percentiles in ms of samples in seconds (bench/load.py and friends use the same shape)."""
    ms = np.asarray(samples) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "count": len(samples)}


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU of this process or ``pid`` (Linux). CPU/wall well below the core count
    during a phase means it waited on someone else's load: that phase's number is noisy."""
    if pid is None:
        mine = os.times()
        return mine.user + mine.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(work: Callable[[], Any], pid: int | None = None) -> tuple[Any, dict[str, float]]:
    """Run ``work``; its result, wall seconds, and CPU seconds of the process doing the work."""
    cpu, start = cpu_seconds(pid), time.perf_counter()
    result = work()
    wall = time.perf_counter() - start
    used = cpu_seconds(pid) - cpu
    return result, {"total_s": wall, "cpu_s": used, "cpu_per_wall": used / wall}


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command the way an operator would; its stdout, or a readable failure."""
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    """Daphne, as deployed; returns once /readiness answers 200 (60 s at most)."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                 "memoryweb.asgi:application"], cwd=REPO, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readiness", timeout=2, trust_env=False).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"daphne not ready after 60 s:\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post(client: httpx.Client, path: str, body: dict[str, Any], expect: int) -> httpx.Response:
    response = client.post(path, json=body)
    if response.status_code != expect:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    return response


def disk_mb(path: Path) -> dict[str, float]:
    """MiB allocated (as du counts) under a data dir: chroma/, SQLite files, the rest, total."""
    sizes = dict.fromkeys(("chroma", "sqlite", "other"), 0.0)
    for file in path.rglob("*"):
        if file.is_file():
            part = ("chroma" if file.relative_to(path).parts[0] == "chroma"
                    else "sqlite" if ".sqlite3" in file.name else "other")
            sizes[part] += file.stat().st_blocks * 512 / 2**20
    return {**sizes, "total": sum(sizes.values())}


class Floor:
    """The lower bound: the server's embedder and a bare Chroma collection, no HTTP or SQL."""

    def __init__(self, workdir: Path) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = "memoryweb.settings"
        sys.path.insert(0, str(REPO))
        import chromadb
        import django

        from apps.core.conf import prepare_data_dir

        prepare_data_dir()  # the data directory and its secret key, before setup
        django.setup()
        from apps.memories.embeddings import MiniLMOnnxEmbedder

        self.embedder = MiniLMOnnxEmbedder()
        self.path = workdir / "floor" / "chroma"
        client = chromadb.PersistentClient(path=str(self.path),
                                           settings=chromadb.config.Settings(anonymized_telemetry=False))
        self.collection = client.create_collection("floor", configuration={"hnsw": {"space": "cosine"}})
        self.embedder.embed(["load the model"])  # untimed, like the server's first recall

    def ingest(self, texts: list[str], first_id: int, batch: int) -> None:
        for i in range(0, len(texts), batch):
            chunk = texts[i : i + batch]
            ids = [str(first_id + i + j) for j in range(len(chunk))]
            self.collection.add(ids=ids, embeddings=self.embedder.embed(chunk))

    def recall(self, query: str) -> tuple[int, dict[str, float]]:
        result = self.collection.query(query_embeddings=self.embedder.embed([query]), n_results=10,
                                       include=["distances"])
        return len(result["ids"][0]), {}


class Server:
    """The Daphne subprocess behind one keep-alive connection with an agent key."""

    def __init__(self, proc: subprocess.Popen, port: int, key: str, data_dir: Path) -> None:
        self.proc, self.pid, self.data_dir = proc, proc.pid, data_dir
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False,
                                   headers={"Authorization": f"Bearer {key}"})
        post(self.client, "/api/v1/recall", {"query": "load the model", "k": 1}, 200)  # untimed

    def ingest(self, memories: list[dict[str, Any]], batch: int) -> None:
        for i in range(0, len(memories), batch):
            chunk = memories[i : i + batch]
            stored = post(self.client, "/api/v1/memories/batch", {"memories": chunk}, 201).json()
            if stored["count"] != len(chunk):
                raise RuntimeError("batch response count does not match the request")

    def recall(self, query: str, mode: str) -> tuple[int, dict[str, float]]:
        """Hybrid is sent without a mode, as clients do: it must be the server's default."""
        body = {"query": query, "k": 10} | ({} if mode == "hybrid" else {"mode": mode})
        response = post(self.client, "/api/v1/recall", body, 200)
        answer = response.json()
        if answer["mode"] != mode:
            raise RuntimeError(f"asked for {mode} recall, the server ran {answer['mode']}")
        stages = {}
        for part in response.headers.get("server-timing", "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            if duration:
                stages[name] = float(duration)
        return len(answer["results"]), stages

    def settle(self, timeout: float = 10.0) -> float:
        """Wait until the server's CPU is idle (at most one clock tick in 0.1 s); seconds waited.

        Anything it still does after answering (index work, tasks) would otherwise be charged
        to the floor's turn."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            before = cpu_seconds(self.pid)
            time.sleep(0.1)
            if cpu_seconds(self.pid) - before <= 0.011:
                break
        return time.perf_counter() - start

    def resources(self) -> dict[str, Any]:
        """RSS and peak RSS (MiB), threads, open files and disk of the server right now."""
        status = dict(line.split(":", 1) for line in
                      Path(f"/proc/{self.pid}/status").read_text().splitlines() if ":" in line)
        return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
                "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
                "threads": int(status["Threads"]), "open_files": len(os.listdir(f"/proc/{self.pid}/fd")),
                "disk_mb": disk_mb(self.data_dir)}

    def close(self) -> None:
        self.client.close()
        stop_server(self.proc)


def recall_checkpoint(floor: Floor, server: Server, queries: list[str], size: int) -> dict[str, Any]:
    """Recall interleaved query by query, the order of the three series rotating per query."""
    calls: dict[str, Callable[[str], tuple[int, dict[str, float]]]] = {
        "floor": floor.recall, "vector": partial(server.recall, mode="vector"),
        "hybrid": partial(server.recall, mode="hybrid")}
    latencies: dict[str, list[float]] = {name: [] for name in SERIES}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in SERIES}
    warmup = generate_queries(WARMUP, seed=7)
    server.settle()
    for i, query in enumerate(tqdm(warmup + queries, desc=f"recall at {size:,}", unit="q", leave=False)):
        if i == len(warmup):
            # What the warm-up started in the background (the auto keyword engine builds
            # the namespace's index after its table's first answer: seconds at 100,000)
            # ends before the timed queries: they measure the steady state.
            server.settle(timeout=300.0)
        turn = i % len(SERIES)
        for name in SERIES[turn:] + SERIES[:turn]:
            start = time.perf_counter()
            found, timing = calls[name](query)
            elapsed = time.perf_counter() - start
            if not found:
                raise RuntimeError(f"{name} recall at {size}: no results for {query!r}")
            if i < len(warmup):
                continue
            latencies[name].append(elapsed)
            if "app" in timing:
                timing["outside_app"] = elapsed * 1000 - timing["app"]
            for stage, ms in timing.items():
                stages[name].setdefault(stage, []).append(ms / 1000)
    recall = {name: {**stats_ms(latencies[name]),
                     **({"server_timing": {s: stats_ms(v) for s, v in stages[name].items()}}
                        if stages[name] else {})} for name in SERIES}
    resources = server.resources()
    resources["disk_mb_per_1000"] = resources["disk_mb"]["total"] / (size / 1000)
    return {"size": size, "recall": recall,
            "ratios": {f"{name}_{p}_over_floor": recall[name][p] / recall["floor"][p]
                       for name in ("vector", "hybrid") for p in ("p50", "p95")},
            "server": resources, "floor_disk_mb": disk_mb(floor.path.parent)["total"],
            "loadavg": os.getloadavg()}


def ingest_rates(blocks: list[dict[str, Any]], n: int, window: int) -> dict[str, Any]:
    """Memories per second per window of ``window`` memories (by block start), and overall.
    server_cpu_over_floor (CPU seconds, server process / bench process) shrugs off other load
    on the machine better than wall time does: the work each side does per memory."""

    def rate(rows: list[dict[str, Any]]) -> dict[str, float]:
        count = sum(r["to"] - r["from"] for r in rows)
        floor, server = (count / sum(r[f"{who}_s"] for r in rows) for who in ("floor", "server"))
        cpu = sum(r["server_cpu_s"] for r in rows) / sum(r["floor_cpu_s"] for r in rows)
        return {"from": rows[0]["from"], "to": rows[-1]["to"], "floor_per_s": floor, "server_per_s": server,
                "server_over_floor": server / floor, "server_cpu_over_floor": cpu}

    windows = [rate([r for r in blocks if lo <= r["from"] < lo + window]) for lo in range(0, n, window)]
    return {"overall": rate(blocks), "windows": windows,
            "first_window": rate([r for r in blocks if r["to"] <= window] or blocks[:1]),
            "last_window": rate([r for r in blocks if r["from"] >= n - window] or blocks[-1:])}


def run(floor: Floor, server: Server, memories: list[dict[str, Any]], queries: list[str],
        args: argparse.Namespace, save: Callable[[list, list], Any]) -> tuple[list, list]:
    """Ingest block by block, alternating who goes first; recall at each checkpoint, after
    which ``save`` writes what is known so far (a long run that dies keeps its checkpoints)."""
    ends = sorted(set(range(args.block, args.n, args.block)) | set(args.checkpoints) | {args.n})
    blocks, points, start = [], [], 0
    bar = tqdm(total=args.n, desc="ingest (floor+server)", unit="mem")
    for i, end in enumerate(ends):
        chunk = memories[start:end]
        turns = {"floor": (partial(floor.ingest, [m["content"] for m in chunk], start, args.batch), None),
                 "server": (partial(server.ingest, chunk, args.batch), server.pid)}
        order = ("floor", "server") if i % 2 == 0 else ("server", "floor")
        row: dict[str, Any] = {"from": start, "to": end, "first": order[0], "settle_s": 0.0}
        for who in order:
            _, took = measure(*turns[who])
            row |= {f"{who}_s": took["total_s"], f"{who}_cpu_s": took["cpu_s"]}
            if who == "server":
                row["settle_s"] = server.settle()
        blocks.append(row)
        bar.update(end - start)
        if end in args.checkpoints:
            points.append(recall_checkpoint(floor, server, queries, end))
            hybrid = points[-1]["ratios"]["hybrid_p95_over_floor"]
            bar.write(f"checkpoint {end:,}: hybrid p95 {hybrid:.2f}x floor")
            save(blocks, points)
        start = end
    bar.close()
    return blocks, points


def judge(points: list[dict[str, Any]], rates: dict[str, Any], args: argparse.Namespace
          ) -> dict[str, dict[str, Any]]:
    """Each target: its value, its limit, and pass/fail."""
    checks: dict[str, tuple[float, str, float]] = {}
    for point in points:
        checks[f"hybrid_p95_le_2x_floor_at_{point['size']}"] = (
            point["ratios"]["hybrid_p95_over_floor"], "<=", 2.0)
    if len(points) >= 2:
        lexical = [p["recall"]["hybrid"].get("server_timing", {}).get("lexical", {}).get("p50")
                   for p in (points[0], points[-1])]
        growth = lexical[1] / lexical[0] if None not in lexical else float("inf")
        checks["lexical_p50_growth_le_1.5x"] = (growth, "<=", 1.5)
    checks["server_ingest_ge_80pct_floor"] = (rates["overall"]["server_over_floor"], ">=", 0.8)
    if rates["overall"]["to"] >= 2 * args.window:
        last, first = rates["last_window"]["server_per_s"], rates["first_window"]["server_per_s"]
        checks["server_rate_last_window_ge_80pct_first"] = (last / first, ">=", 0.8)
    return {name: {"value": value, "limit": f"{op} {limit}",
                   "result": "pass" if (value <= limit if op == "<=" else value >= limit) else "fail"}
            for name, (value, op, limit) in checks.items()}


def chart(report: dict[str, Any], path: Path) -> None:
    """p95 vs floor per mode, hybrid stage p50s, ingest rate per window, RSS and disk; by size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["checkpoints"]
    sizes = [p["size"] for p in points]
    fig, ((ratio, stage), (ingest, res)) = plt.subplots(2, 2, figsize=(12, 8.5))
    for mode, color in (("vector", "#d95f02"), ("hybrid", "#7570b3")):
        ratio.plot(sizes, [p["ratios"][f"{mode}_p95_over_floor"] for p in points], "o-", color=color,
                   label=f"{mode}" + (" (default)" if mode == "hybrid" else ""))
    ratio.axhline(2.0, color="grey", ls="--", lw=1, label="target 2x")
    ratio.set(title="Recall p95, server / floor", xlabel="memories in the namespace", ylabel="x floor")
    ratio.set_ylim(bottom=0)
    ratio.legend()
    names = [s for s in points[-1]["recall"]["hybrid"].get("server_timing", {}) if s not in TOTALS]
    for name in names:
        stage.plot(sizes, [p["recall"]["hybrid"]["server_timing"].get(name, {}).get("p50", np.nan)
                           for p in points], "o-", label=name)
    stage.plot(sizes, [p["recall"]["floor"]["p50"] for p in points], "k--", label="floor (whole call)")
    stage.set(title="Hybrid recall stages, p50", xlabel="memories in the namespace", ylabel="ms")
    stage.legend(fontsize=7, ncol=2)
    windows = report["ingest"]["windows"]
    x, width = np.arange(len(windows)), 0.4
    for offset, who, color in ((-width / 2, "floor", "#1b9e77"), (width / 2, "server", "#d95f02")):
        ingest.bar(x + offset, [w[f"{who}_per_s"] for w in windows], width, label=who, color=color)
    ingest.set_xticks(x, [f"{w['from'] // 1000}k-{w['to'] // 1000}k" for w in windows], fontsize=8)
    ingest.set(title=f"Batch ingest (server {report['ingest']['overall']['server_over_floor']:.0%} "
               "of floor)", ylabel="memories / s")
    ingest.legend()
    res.plot(sizes, [p["server"]["rss_mb"] for p in points], "o-", color="#e7298a", label="RSS")
    res.plot(sizes, [p["server"]["hwm_mb"] for p in points], ":", color="#e7298a", label="peak RSS")
    res.set(title="Server memory and disk", xlabel="memories in the namespace", ylabel="RSS (MiB)")
    res.set_ylim(bottom=0)
    res.legend(loc="lower left")
    disk = res.twinx()
    disk.plot(sizes, [p["server"]["disk_mb_per_1000"] for p in points], "s--", color="#66a61e")
    disk.set_ylabel("disk per 1,000 memories (MiB, dashed)", color="#66a61e")
    disk.set_ylim(bottom=0)
    params = report["parameters"]
    fig.suptitle(f"MemoryWeb vs floor, interleaved: N={params['n']:,}, {params['queries']} queries "
                 f"per checkpoint, {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  .venv/bin/python bench/recall_latency.py                    # 10k, one checkpoint\n"
               "  .venv/bin/python bench/recall_latency.py --n 100000 --checkpoints 10000,50000,100000\n"
               "  .venv/bin/python bench/recall_latency.py --n 3000 --checkpoints 1000,3000 --block 500 \\\n"
               "      --queries 40 --window 1000 --output /tmp/rl.json    # smoke run, results/ untouched")
    parser.add_argument("--n", type=int, default=10_000, help="memories to ingest (default 10000)")
    parser.add_argument("--checkpoints", type=lambda s: sorted({int(x) for x in s.split(",") if x}),
                        help="comma-separated sizes at which to measure recall (default: n)")
    parser.add_argument("--block", type=int, default=1000,
                        help="memories per interleaved ingest block (default 1000)")
    parser.add_argument("--batch", type=int, default=500, help="memories per batch request, max 1000 (500)")
    parser.add_argument("--queries", type=int, default=300,
                        help=f"timed queries per series per checkpoint, after {WARMUP} warm-up (300)")
    parser.add_argument("--window", type=int, default=10_000,
                        help="memories per ingest-rate window: first vs last (default 10000)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server only, repeatable (e.g. MEMORYWEB_INDEX_CONTEXT=false)")
    parser.add_argument("--data-dir", type=Path, help="server data dir, new or empty (default: fresh temp)")
    parser.add_argument("--keep-data", action="store_true", help="do not delete the temp dirs at the end")
    parser.add_argument("--output", type=Path, default=RESULTS / "recall_latency.json",
                        help="JSON report; the PNG chart is written next to it (default bench/results/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    args.checkpoints = args.checkpoints or [args.n]
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000")
    if args.n < 10 or args.queries < 1 or args.block < 1 or args.window < 1:
        parser.error("--n must be >= 10; --queries, --block and --window >= 1")
    if not 1 <= args.checkpoints[0] <= args.checkpoints[-1] <= args.n:
        parser.error("--checkpoints must lie between 1 and --n")
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    return args


def summary(report: dict[str, Any]) -> None:
    """The numbers the acceptance reads, one checkpoint per block of lines."""
    for point in report["checkpoints"]:
        rec, srv = point["recall"], point["server"]
        print(f"\n== {point['size']:,} memories (loadavg {point['loadavg'][0]:.2f})")
        print(f"{'ms':10}" + "".join(f"{p:>9}" for p in ("p50", "p95", "p99", "mean")) + f"{'p95/floor':>11}")
        for name in SERIES:
            print(f"{name:10}" + "".join(f"{rec[name][p]:9.1f}" for p in ("p50", "p95", "p99", "mean"))
                  + f"{rec[name]['p95'] / rec['floor']['p95']:11.2f}")
        for name in ("vector", "hybrid"):
            stages = rec[name].get("server_timing", {})
            print(f"  {name} stages p50: " + ", ".join(f"{s} {v['p50']:.1f}" for s, v in stages.items()))
        print(f"  server RSS {srv['rss_mb']:.0f} MiB (peak {srv['hwm_mb']:.0f}), {srv['open_files']} open "
              f"files, disk {srv['disk_mb']['total']:.1f} MiB = {srv['disk_mb_per_1000']:.2f} MiB/1k "
              f"(sqlite {srv['disk_mb']['sqlite']:.1f}, chroma {srv['disk_mb']['chroma']:.1f}); "
              f"floor disk {point['floor_disk_mb']:.1f} MiB")
    print("\ningest (memories/s)   floor   server  ratio  cpu ratio")
    ingest = report["ingest"]
    for label, row in [*((f"{w['from']:,}-{w['to']:,}", w) for w in ingest["windows"]),
                       ("overall", ingest["overall"])]:
        print(f"  {label:18}{row['floor_per_s']:7.0f}{row['server_per_s']:9.0f}"
              f"{row['server_over_floor']:7.2f}{row['server_cpu_over_floor']:11.2f}")
    for name, target in report["targets"].items():
        print(f"target {name}: {target['value']:.2f} {target['limit']} -> {target['result'].upper()}")


def _embedder_batches(server_env: list[str]) -> dict[str, int]:
    """Texts per model run on each side: the floor's embedder class default, the server's
    MEMORYWEB_EMBED_BATCH (its --server-env, else the settings' default)."""
    from django.conf import settings

    from apps.memories.embeddings import MiniLMOnnxEmbedder

    chosen = dict(kv.split("=", 1) for kv in server_env).get("MEMORYWEB_EMBED_BATCH")
    return {"floor": MiniLMOnnxEmbedder.BATCH_SIZE,
            "server": int(chosen) if chosen else settings.MEMORYWEB_EMBED_BATCH}


def report(args: argparse.Namespace, blocks: list[dict[str, Any]], points: list[dict[str, Any]],
           load_before: tuple[float, ...], started: float) -> dict[str, Any]:
    """The JSON: machine, parameters, checkpoints, ingest rates with every block, targets."""
    rates = ingest_rates(blocks, blocks[-1]["to"], args.window)
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": blocks[-1]["to"] == args.n and len(points) == len(args.checkpoints),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "parameters": {"n": args.n, "checkpoints": args.checkpoints, "block": args.block,
                       "batch": args.batch, "queries": args.queries, "warmup": WARMUP,
                       "window": args.window, "k": 10, "seed": 42,
                       "embedder_batch": _embedder_batches(args.server_env),
                       "server_env": args.server_env},
        "duration_s": time.perf_counter() - started,
        "notes": ["Protocol and fields: the docstring of bench/recall_latency.py and bench/README.md.",
                  "server_timing (ms): app = all of Django, service = the recall service, outside_app ="
                  " client latency - app (Daphne, HTTP, client); in hybrid, lexical overlaps embed+vector."],
        "checkpoints": points, "ingest": {**rates, "blocks": blocks},
        "targets": judge(points, rates, args),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mw-bench-data-"))
    work = Path(tempfile.mkdtemp(prefix="mw-bench-floor-"))
    base = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false"}
    server_env = {**base, **dict(kv.split("=", 1) for kv in args.server_env),
                  "MEMORYWEB_DATA_DIR": str(data_dir)}
    # The floor's Django gets its own data dir (never the server's) and keeps per-request logs quiet.
    os.environ.update({**base, "MEMORYWEB_DATA_DIR": str(work), "LOG_LEVEL": "WARNING"})
    memories, queries = generate_memories(args.n), generate_queries(args.queries)
    load_before, started = os.getloadavg(), time.perf_counter()
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def save(blocks: list[dict[str, Any]], points: list[dict[str, Any]]) -> dict[str, Any]:
        result = report(args, blocks, points, load_before, started)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        return result

    try:
        manage(server_env, "migrate", "-v0")
        manage(server_env, "create_namespace", NAMESPACE)
        key = manage(server_env, "create_api_key", "--namespace", NAMESPACE, "--role", "agent",
                     "--agent-id", AGENT).splitlines()[-1].strip()
        floor = Floor(work)
        port = free_port()
        server = Server(start_server(server_env, port, work / "daphne.log"), port, key, data_dir)
        try:
            blocks, points = run(floor, server, memories, queries, args, save)
        finally:
            server.close()
    finally:
        if args.keep_data:
            print(f"kept {data_dir} (server) and {work} (floor, daphne.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)
            if args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)
    final = save(blocks, points)
    png = args.output.with_suffix(".png")
    chart(final, png)
    summary(final)
    print(f"wrote {args.output} and {png}")
    return 1 if args.check and any(t["result"] == "fail" for t in final["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
