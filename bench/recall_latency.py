#!/usr/bin/env python
"""Recall latency and batch-ingest throughput of MemoryWeb over HTTP, against the raw floor.

The "floor" is what the same work costs with no server at all: the same embedder and a bare
Chroma collection, called in-process. The ratio HTTP/floor is the price of everything
MemoryWeb adds (HTTP, auth, validation, SQL, outbox, tenancy); the targets bound that price:

* HTTP recall p95 <= 3x the floor's p95;
* HTTP batch ingest >= 50% of the floor's throughput.

A real Daphne process serves a fresh data directory, so the numbers include what a client sees.
The floor runs before Daphne starts so the two never compete for CPU cores.
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


def stats_ms(samples: list[float]) -> dict[str, float]:
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


def run_floor(texts: list[str], queries: list[str], batch: int, workdir: Path) -> dict[str, Any]:
    """Same embedder as the server, bare Chroma, no HTTP/SQL: the lower bound we compare against."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "memoryweb.settings"
    sys.path.insert(0, str(REPO))
    import chromadb
    import django

    from apps.core.conf import prepare_data_dir

    prepare_data_dir()  # the data directory and its secret key, before setup
    django.setup()
    from apps.memories.embeddings import MiniLMOnnxEmbedder

    embedder = MiniLMOnnxEmbedder(batch_size=64)
    client = chromadb.PersistentClient(path=str(workdir / "floor_chroma"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    collection = client.create_collection("floor", configuration={"hnsw": {"space": "cosine"}})

    def ingest() -> None:
        for i in tqdm(range(0, len(texts), batch), desc="floor ingest", unit="batch"):
            chunk = texts[i : i + batch]
            collection.add(ids=[str(j) for j in range(i, i + len(chunk))], embeddings=embedder.embed(chunk))

    def recall(q: str) -> int:
        result = collection.query(query_embeddings=embedder.embed([q]), n_results=10, include=["distances"])
        return len(result["ids"][0])

    return report_phases(len(texts), measure(ingest), measure(lambda: timed(recall, queries, "floor recall")))


def report_phases(n: int, ingest: tuple[Any, dict[str, float]],
                  recall: tuple[list[float], dict[str, float]]) -> dict[str, Any]:
    """The JSON shape shared by the HTTP and floor sections, so ratios line up field by field."""
    return {"ingest": {**ingest[1], "per_s": n / ingest[1]["total_s"]},
            "recall": {**stats_ms(recall[0]), "cpu_per_wall": recall[1]["cpu_per_wall"]}}


def timed(call: Callable[[str], int], queries: list[str], desc: str) -> list[float]:
    """Warm up, then time each call sequentially; every call must find something."""
    for q in generate_queries(WARMUP, seed=7):
        call(q)
    latencies = []
    for q in tqdm(queries, desc=desc, unit="q"):
        start = time.perf_counter()
        found = call(q)
        latencies.append(time.perf_counter() - start)
        if not found:
            raise RuntimeError(f"{desc}: no results for {q!r}")
    return latencies


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


def post(client: httpx.Client, path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code != expect:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    return response.json()


def run_http(client: httpx.Client, memories: list[dict[str, Any]], queries: list[str],
             batch: int, server_pid: int) -> dict[str, Any]:
    """Batch ingest then sequential recall through the public API, one keep-alive connection."""
    post(client, "/api/v1/recall", {"query": "load the model", "k": 1}, 200)  # embedder load, untimed

    def ingest() -> None:
        for i in tqdm(range(0, len(memories), batch), desc="http ingest", unit="batch"):
            chunk = memories[i : i + batch]
            if post(client, "/api/v1/memories/batch", {"memories": chunk}, 201)["count"] != len(chunk):
                raise RuntimeError("batch response count does not match the request")

    ingested = measure(ingest, server_pid)
    vector = measure_recall(client, queries, "vector", server_pid)
    hybrid = measure_recall(client, queries, "hybrid", server_pid)
    report = report_phases(len(memories), ingested, vector[:2])
    report["recall"]["server_timing"] = vector[2]
    report["recall_hybrid"] = {**report_phases(len(memories), ingested, hybrid[:2])["recall"],
                               "server_timing": hybrid[2]}
    return report


def measure_recall(client: httpx.Client, queries: list[str], mode: str | None, server_pid: int
                   ) -> tuple[list[float], dict[str, float], dict[str, dict[str, float]]]:
    """Sequential recalls in one mode (None: the server's default).

    Returns the latencies, the CPU measure, and where the server spent its time (the
    Server-Timing header), warm-up queries excluded.
    """
    stages: dict[str, list[float]] = {}
    body = {"k": 10} | ({"mode": mode} if mode else {})

    def recall(q: str) -> int:
        response = client.post("/api/v1/recall", json={"query": q, **body})
        if response.status_code != 200:
            raise RuntimeError(f"POST /api/v1/recall: {response.status_code} {response.text[:500]}")
        for part in response.headers.get("server-timing", "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            if duration:
                stages.setdefault(name, []).append(float(duration) / 1000)
        return len(response.json()["results"])

    latencies, cpu = measure(lambda: timed(recall, queries, f"http recall ({mode or 'default'})"),
                             server_pid)
    return latencies, cpu, {name: stats_ms(values[-len(queries):]) for name, values in stages.items()}


def chart(report: dict[str, Any], path: Path) -> None:
    """Two panels: latency percentiles (grouped bars) and ingest throughput, HTTP vs floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    x, width = np.arange(3), 0.27
    series = (("HTTP, vector", report["http"]["recall"], "#d95f02"),
              ("HTTP, hybrid", report["http"]["recall_hybrid"], "#7570b3"),
              ("raw floor", report["floor"]["recall"], "#1b9e77"))
    for offset, (label, stats, color) in zip((-width, 0, width), series, strict=True):
        values = [stats[p] for p in ("p50", "p95", "p99")]
        left.bar_label(left.bar(x + offset, values, width, label=label, color=color), fmt="%.1f", fontsize=7)
    left.set_xticks(x, ["p50", "p95", "p99"])
    left.set_ylabel("recall latency (ms)")
    ratios = report["ratios"]
    left.set_title(f"Recall, k=10 (p95 vs floor: {ratios['recall_p95_http_over_floor']:.2f}x vector, "
                   f"{ratios['hybrid_recall_p95_http_over_floor']:.2f}x hybrid, the default)", fontsize=10)
    left.legend()
    values = [report["http"]["ingest"]["per_s"], report["floor"]["ingest"]["per_s"]]
    right.bar_label(right.bar(["HTTP batch", "raw floor"], values, color=["#d95f02", "#1b9e77"]),
                    fmt="%.0f", fontsize=8)
    right.set_ylabel("memories / s")
    right.set_title(f"Ingest (ratio {report['ratios']['ingest_http_over_floor']:.0%})")
    n, date = report["parameters"]["n"], report["timestamp"][:10]
    fig.suptitle(f"MemoryWeb recall latency and ingest, N={n:,}, {date}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: .venv/bin/python bench/recall_latency.py --n 1000 --queries 50")
    parser.add_argument("--n", type=int, default=10_000, help="memories to ingest (default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="memories per batch request, max 1000 (500)")
    parser.add_argument("--queries", type=int, default=300, help="timed recall queries (default 300)")
    parser.add_argument("--data-dir", type=Path, help="server data dir, new or empty (default: fresh temp)")
    parser.add_argument("--keep-data", action="store_true", help="do not delete the temp dirs at the end")
    parser.add_argument("--output", type=Path, default=RESULTS / "recall_latency.json",
                        help="JSON report; the PNG chart is written next to it (default bench/results/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000")
    if args.n < 10 or args.queries < 1:
        parser.error("--n must be >= 10 and --queries >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mw-bench-data-"))
    floor_dir = Path(tempfile.mkdtemp(prefix="mw-bench-floor-"))
    base = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false"}
    server_env = {**base, "MEMORYWEB_DATA_DIR": str(data_dir)}
    # The floor's Django gets its own data dir (never the server's) and keeps per-request logs quiet.
    os.environ.update({**base, "MEMORYWEB_DATA_DIR": str(floor_dir), "LOG_LEVEL": "WARNING"})
    memories, queries = generate_memories(args.n), generate_queries(args.queries)
    load_before = os.getloadavg()
    try:
        manage(server_env, "migrate", "-v0")
        manage(server_env, "create_namespace", NAMESPACE)
        key = manage(server_env, "create_api_key", "--namespace", NAMESPACE, "--role", "agent",
                     "--agent-id", AGENT).splitlines()[-1].strip()
        floor = run_floor([m["content"] for m in memories], queries, args.batch, floor_dir)
        port = free_port()
        server = start_server(server_env, port, data_dir / "daphne.log")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                http = run_http(client, memories, queries, args.batch, server.pid)
        finally:
            stop_server(server)
    finally:
        if not args.keep_data:
            shutil.rmtree(floor_dir, ignore_errors=True)
            if args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)

    ratios = {"ingest_http_over_floor": http["ingest"]["per_s"] / floor["ingest"]["per_s"],
              "recall_p95_http_over_floor": http["recall"]["p95"] / floor["recall"]["p95"],
              "hybrid_recall_p95_http_over_floor": http["recall_hybrid"]["p95"] / floor["recall"]["p95"]}
    targets = {"recall_p95_le_3x_floor": ratios["recall_p95_http_over_floor"] <= 3.0,
               "hybrid_recall_p95_le_3x_floor": ratios["hybrid_recall_p95_http_over_floor"] <= 3.0,
               "ingest_ge_50pct_floor": ratios["ingest_http_over_floor"] >= 0.5}
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "parameters": {"n": args.n, "batch": args.batch, "queries": args.queries, "warmup": WARMUP,
                       "k": 10, "seed": 42, "embedder_batch": 64},
        "phase_order": ["setup (manage.py)", "floor ingest", "floor recall", "daphne start",
                        "http ingest", "http recall (vector)", "http recall (hybrid, the default)"],
        "notes": ["The floor runs in the bench process before Daphne starts: the two never share CPU.",
                  "One untimed recall loads the server's embedder before the timed HTTP ingest.",
                  f"Latency excludes {WARMUP} warm-up queries; requests are sequential, one connection.",
                  "cpu_per_wall: CPU of the working process (server for HTTP) / wall time; well below "
                  "its usual value means the phase waited on other load on the machine."],
        "http": http, "floor": floor, "ratios": ratios,
        "targets": {name: "pass" if ok else "fail" for name, ok in targets.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    png = args.output.with_suffix(".png")
    chart(report, png)

    print(f"\nN={args.n} batch={args.batch} queries={args.queries} nproc={os.cpu_count()}")
    print(f"{'':18}{'HTTP':>10}{'floor':>10}{'ratio':>8}")
    print(f"{'ingest (mem/s)':18}{http['ingest']['per_s']:10.0f}{floor['ingest']['per_s']:10.0f}"
          f"{ratios['ingest_http_over_floor']:8.2f}")
    for p in ("p50", "p95", "p99", "mean"):
        h, f = http["recall"][p], floor["recall"][p]
        print(f"{'vector ' + p + ' (ms)':18}{h:10.1f}{f:10.1f}{h / f:8.2f}")
    for name, stage in http["recall"].get("server_timing", {}).items():
        print(f"{'  server ' + name:18}{stage['p50']:10.1f} p50 {stage['p95']:6.1f} p95")
    for p in ("p50", "p95", "p99"):
        h, f = http["recall_hybrid"][p], floor["recall"][p]
        print(f"{'hybrid ' + p + ' (ms)':18}{h:10.1f}{f:10.1f}{h / f:8.2f}")
    for name, stage in http["recall_hybrid"]["server_timing"].items():
        print(f"{'  server ' + name:18}{stage['p50']:10.1f} p50 {stage['p95']:6.1f} p95")
    for name, verdict in report["targets"].items():
        print(f"target {name}: {verdict.upper()}")
    print(f"wrote {args.output} and {png}")
    return 1 if args.check and not all(targets.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
