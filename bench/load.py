"""Load and soak: 32 concurrent agents mixing ingest and recall against Daphne.

Two deployments, one after the other, each on fresh data:

* embedded: one Daphne process, SQLite + the local Chroma, jobs in process;
* scaled: two Daphne processes (agents split between them) and a job worker sharing
  PostgreSQL (127.0.0.1:5432, a fresh database), a Chroma server started here, and Redis.

Each namespace (4, with 8 agents each) is seeded with --seed memories first. Then every
agent loops for --seconds: with probability --ingest-share it stores a memory (one
REST call), otherwise it recalls (hybrid, k 10). Reports throughput, p50/p95/p99 per
operation, errors (any non-2xx or transport error; must be 0) and the server processes'
RSS before and after; plots latency over time (per-second p50 and p95).

Writes bench/results/load.json and load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus import generate_memories, generate_queries
from recall_latency import REPO, free_port, manage, start_server, stop_server

RESULTS = REPO / "bench" / "results"
NAMESPACES = 4
AGENTS = 32


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {"n": len(values), "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1)}


def server_errors(*logs: Path) -> list[str]:
    """The last lines of each traceback the servers logged (why a request failed)."""
    found = []
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        for block in text.split("Traceback (most recent call last):")[1:]:
            lines = [line for line in block.splitlines()[:80]
                     if line.strip() and not line.startswith("127.0.0.1")]
            cause = next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines))
            found.append(f"{log.name}: " + " | ".join(lines[max(cause - 2, 0):cause + 1])[:600])
    return found[:10]


def setup(env: dict[str, str], seed: int) -> dict[str, list[str]]:
    """Namespaces, one agent key per agent, and the seed memories (through the API)."""
    manage(env, "migrate", "--no-input", "-v0")
    keys: dict[str, list[str]] = {}
    for n in range(NAMESPACES):
        slug = f"load-{n}"
        manage(env, "create_namespace", slug)
        keys[slug] = [manage(env, "create_api_key", "--namespace", slug, "--role", "agent",
                             "--agent-id", f"agent-{n}-{a}").strip().splitlines()[-1]
                      for a in range(AGENTS // NAMESPACES)]
    return keys


def seed_memories(url: str, keys: dict[str, list[str]], count: int) -> None:
    memories = generate_memories(count * NAMESPACES)
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
        for n, agent_keys in enumerate(keys.values()):
            chunk = memories[n * count:(n + 1) * count]
            for start in range(0, len(chunk), 500):
                response = client.post("/api/v1/memories/batch", json={"memories": [
                    {k: m[k] for k in ("content", "tags", "kind")} for m in chunk[start:start + 500]]},
                    headers={"Authorization": f"Bearer {agent_keys[0]}"})
                response.raise_for_status()


async def agent(url: str, key: str, number: int, deadline: float, ingest_share: float,
                queries: list[str], samples: list[tuple[float, str, float, bool]],
                failures: list[str]) -> None:
    rng = random.Random(number)
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        n = 0
        while time.monotonic() < deadline:
            ingest = rng.random() < ingest_share
            start = time.monotonic()
            try:
                if ingest:
                    response = await client.post("/api/v1/memories", json={
                        "content": f"Agent {number} observation {n}: {rng.choice(queries)} "
                                   f"(reading {rng.randint(0, 10**6)})."})
                else:
                    response = await client.post("/api/v1/recall", json={
                        "query": rng.choice(queries), "k": 10})
                ok = 200 <= response.status_code < 300
                if not ok:
                    failures.append(f"{'ingest' if ingest else 'recall'} {response.status_code}: "
                                    f"{response.text[:300]}")
            except httpx.HTTPError as exc:
                ok = False
                failures.append(f"{'ingest' if ingest else 'recall'} {type(exc).__name__}: {exc}")
            samples.append((start, "ingest" if ingest else "recall", time.monotonic() - start, ok))
            n += 1


def run_load(urls: list[str], keys: dict[str, list[str]], seconds: float, ingest_share: float,
             pids: list[int]) -> dict[str, Any]:
    queries = generate_queries(500)
    samples: list[tuple[float, str, float, bool]] = []
    failures: list[str] = []
    flat = [(slug, key) for slug, agent_keys in keys.items() for key in agent_keys]
    rss_before = {pid: round(rss_mb(pid), 1) for pid in pids}
    started = time.monotonic()
    deadline = started + seconds

    async def everyone() -> None:
        await asyncio.gather(*(agent(urls[i % len(urls)], key, i, deadline, ingest_share, queries,
                                     samples, failures) for i, (_, key) in enumerate(flat)))

    asyncio.run(everyone())
    elapsed = time.monotonic() - started
    rss_after = {pid: round(rss_mb(pid), 1) for pid in pids}
    errors = sum(not ok for *_, ok in samples)
    by_op = {op: [latency for _, kind, latency, _ in samples if kind == op] for op in ("ingest", "recall")}
    timeline: dict[str, list[list[float]]] = {"ingest": [], "recall": []}
    for second in range(int(elapsed) + 1):
        for op in timeline:
            window = [latency * 1000 for at, kind, latency, _ in samples
                      if kind == op and second <= at - started < second + 1]
            if window:
                timeline[op].append([second, float(np.percentile(window, 50)),
                                     float(np.percentile(window, 95))])
    return {
        "seconds": round(elapsed, 1), "requests": len(samples), "errors": errors,
        "error_samples": failures[:20],
        "throughput_rps": round(len(samples) / elapsed, 1),
        "ingest_rps": round(len(by_op["ingest"]) / elapsed, 1),
        "recall_rps": round(len(by_op["recall"]) / elapsed, 1),
        "latency_ms": {op: percentiles(values) for op, values in by_op.items()},
        "rss_mb": {"before": rss_before, "after": rss_after,
                   "growth": round(sum(rss_after.values()) - sum(rss_before.values()), 1)},
        "timeline": timeline,
    }


def embedded(args, work: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(work / "embedded"), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "MEMORYWEB_RATE_LIMIT": ""})
    keys = setup(env, args.seed)
    port = free_port()
    server = start_server(env, port, work / "embedded.log")
    try:
        url = f"http://127.0.0.1:{port}"
        seed_memories(url, keys, args.seed)
        print(f"embedded: seeded {args.seed * NAMESPACES} memories; {args.seconds} s of load", flush=True)
        result = run_load([url], keys, args.seconds, args.ingest_share, [server.pid])
        result["server_errors"] = server_errors(work / "embedded.log")
        return result
    finally:
        stop_server(server)


def scaled(args, work: Path) -> dict[str, Any]:
    import psycopg

    from tests.servers import ChromaServer

    database = f"mw_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    chroma = ChromaServer(work / "chroma", work / "chroma.log")
    chroma.start()
    base = args.postgres.rsplit("/", 1)[0]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(work / "scaled"), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "MEMORYWEB_RATE_LIMIT": "", "DATABASE_URL": f"{base}/{database}",
                "CHROMA_URL": chroma.url, "REDIS_URL": args.redis,
                "MEMORYWEB_CHANNEL_PREFIX": database})
    servers, worker = [], None
    try:
        keys = setup(env, args.seed)
        with (work / "worker.log").open("ab") as log:
            worker = subprocess.Popen([sys.executable, "manage.py", "run_huey"], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        ports = [free_port(), free_port()]
        servers = [start_server(env, port, work / f"scaled-{port}.log") for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        seed_memories(urls[0], keys, args.seed)
        print(f"scaled: seeded {args.seed * NAMESPACES} memories; {args.seconds} s of load", flush=True)
        result = run_load(urls, keys, args.seconds, args.ingest_share,
                          [s.pid for s in servers] + [worker.pid])
        result["server_errors"] = server_errors(*(work / f"scaled-{port}.log" for port in ports),
                                                work / "worker.log")
        return result
    finally:
        for server in servers:
            stop_server(server)
        if worker is not None:
            stop_server(worker)
        chroma.stop()
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("embedded", "scaled") if m in report["modes"]]
    figure, axes = plt.subplots(len(modes), 1, figsize=(9, 3.2 * len(modes)), squeeze=False)
    for axis, mode in zip(axes[:, 0], modes, strict=True):
        result = report["modes"][mode]
        for op, colour in (("recall", "tab:blue"), ("ingest", "tab:orange")):
            points = np.asarray(result["timeline"][op])
            if len(points):
                axis.plot(points[:, 0], points[:, 1], color=colour, label=f"{op} p50")
                axis.plot(points[:, 0], points[:, 2], color=colour, linestyle="--", label=f"{op} p95")
        axis.set_title(f"{mode}: {result['throughput_rps']} req/s, {result['errors']} errors, "
                       f"RSS +{result['rss_mb']['growth']} MB")
        axis.set_xlabel("seconds")
        axis.set_ylabel("latency (ms)")
        axis.legend(loc="upper right", fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="load per deployment (60)")
    parser.add_argument("--seed", type=int, default=1000, help="memories per namespace first (1000)")
    parser.add_argument("--ingest-share", type=float, default=0.3, help="share of ingests (0.3)")
    parser.add_argument("--modes", default="embedded,scaled", help="embedded,scaled")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="memoryweb-load-"))
    report: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "agents": AGENTS, "namespaces": NAMESPACES, "seed_per_namespace": args.seed,
        "ingest_share": args.ingest_share, "modes": {},
    }
    try:
        for mode in args.modes.split(","):
            report["modes"][mode] = {"embedded": embedded, "scaled": scaled}[mode](args, work)
            result = report["modes"][mode]
            print(f"{mode}: {result['throughput_rps']} req/s ({result['ingest_rps']} ingest, "
                  f"{result['recall_rps']} recall), errors {result['errors']}, latency "
                  f"{result['latency_ms']}, RSS {result['rss_mb']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    chart(report, args.output.with_suffix(".png"))
    errors = sum(r["errors"] for r in report["modes"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
