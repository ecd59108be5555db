"""Live latency: recall over an open WebSocket vs HTTP, and push latency to subscribers.

A real Daphne process serves a fresh data directory holding --n memories (default
10,000, the benchmark corpus). Then:

1. recall round trip: the same sequential queries over one keep-alive HTTP connection
   and over one open WebSocket (time from send to the ``recall.results`` message);
2. push latency: --subscribers WebSocket connections (default 100) each hold a standing
   query; memories that match it are stored one at a time through REST, and each
   subscriber's ``match`` arrival is timed from the moment the REST request was sent.

Writes bench/results/live_latency.json and live_latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import generate_memories, generate_queries
from recall_latency import REPO, free_port, manage, start_server, stop_server

NAMESPACE = "live-bench"


def stats(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000
    return {"n": len(samples), "p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2),
            "mean": round(float(values.mean()), 2)}


async def recall_over_websocket(url: str, key: str, queries: list[str]) -> list[float]:
    latencies = []
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as socket:
        await socket.recv()  # ready
        for i, query in enumerate(tqdm(queries, desc="ws recall", unit="q")):
            start = time.perf_counter()
            await socket.send(json.dumps({"type": "recall", "id": str(i), "query": query, "k": 10}))
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "recall.results":
                    latencies.append(time.perf_counter() - start)
                elif message["type"] == "done":
                    break
                elif message["type"] == "error":
                    raise RuntimeError(message)
    return latencies


def recall_over_http(client: httpx.Client, queries: list[str]) -> list[float]:
    latencies = []
    for query in tqdm(queries, desc="http recall", unit="q"):
        start = time.perf_counter()
        response = client.post("/api/v1/recall", json={"query": query, "k": 10})
        response.raise_for_status()
        latencies.append(time.perf_counter() - start)
    return latencies


async def push_latency(url: str, key: str, client: httpx.Client, subscribers: int,
                       writes: int) -> dict[str, Any]:
    """Each write's t0 is when its REST request was sent; each match is timed against it."""
    sent: dict[str, float] = {}
    arrivals: list[float] = []
    missing = 0
    ready = asyncio.Event()

    async def subscriber(n: int, started: list[int]) -> None:
        nonlocal missing
        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"},
                           max_queue=None) as socket:
            await socket.recv()
            await socket.send(json.dumps({"type": "subscribe", "id": f"s{n}",
                                          "query": "incident on the payment service",
                                          "min_score": 0.3}))
            assert json.loads(await socket.recv())["type"] == "subscribed"
            started.append(n)
            if len(started) == subscribers:
                ready.set()
            seen = 0
            while seen < writes:
                try:
                    message = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
                except TimeoutError:
                    missing += writes - seen
                    return
                if message["type"] == "match":
                    now = time.perf_counter()
                    while message["memory"]["content"] not in sent:
                        await asyncio.sleep(0.001)  # the writer records t0 right after sending
                    arrivals.append(now - sent[message["memory"]["content"]])
                    seen += 1

    started: list[int] = []
    tasks = [asyncio.create_task(subscriber(n, started)) for n in range(subscribers)]
    await ready.wait()
    loop = asyncio.get_running_loop()
    for i in tqdm(range(writes), desc="push writes", unit="write"):
        content = f"Incident {i} on the payment service: card declines spiked."
        start = time.perf_counter()
        future = loop.run_in_executor(None, lambda c=content: client.post(
            "/api/v1/memories", json={"content": c}))
        sent[content] = start
        (await future).raise_for_status()
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return {**stats(arrivals), "subscribers": subscribers, "writes": writes,
            "missing": missing, "samples": [round(a * 1000, 2) for a in arrivals]}


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = ["HTTP", "WebSocket"]
    for offset, metric in ((-0.2, "p50"), (0.2, "p95")):
        left.bar([i + offset for i in range(2)],
                 [report["recall_http"][metric], report["recall_ws"][metric]], width=0.4,
                 label=metric)
    left.set_xticks(range(2), labels)
    left.set(ylabel="ms", title=f"Recall round trip at {report['memories']:,} memories")
    left.legend()
    samples = sorted(report["push"]["samples"])
    right.plot(samples, np.linspace(0, 1, len(samples)))
    right.set(xlabel="ms from REST request to match", ylabel="share of pushes",
              title=f"Push latency, {report['push']['subscribers']} subscribers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="memories (default %(default)s)")
    parser.add_argument("--queries", type=int, default=300, help="recall queries per door")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=50, help="matching memories stored")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mw-live-bench-"))
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(workdir), "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
           "MEMORYWEB_LIVE_SEND_QUEUE": "10000", "MEMORYWEB_LIVE_RATE": "10000"}
    env.pop("REDIS_URL", None)
    try:
        manage(env, "migrate", "-v0")
        manage(env, "create_namespace", NAMESPACE)
        key = manage(env, "create_api_key", "--namespace", NAMESPACE, "--role", "agent",
                     "--agent-id", "bench").splitlines()[-1].strip()
        port = free_port()
        server = start_server(env, port, workdir / "daphne.log")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False,
                              headers={"Authorization": f"Bearer {key}"}) as client:
                memories = generate_memories(args.n)
                for i in tqdm(range(0, len(memories), 500), desc="ingest", unit="batch"):
                    client.post("/api/v1/memories/batch",
                                json={"memories": memories[i : i + 500]}).raise_for_status()
                queries = generate_queries(args.queries)
                url = f"ws://127.0.0.1:{port}/ws/v1/live"
                recall_over_http(client, queries[:20])  # warm-up, untimed
                http = recall_over_http(client, queries)
                ws = asyncio.run(recall_over_websocket(url, key, queries))
                push = asyncio.run(push_latency(url, key, client, args.subscribers, args.writes))
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                          "loadavg_after": os.getloadavg()},
              "memories": args.n, "recall_http": stats(http), "recall_ws": stats(ws),
              "push": push}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "live_latency.json").write_text(json.dumps(report, indent=1))
    chart(report, args.output / "live_latency.png")
    print(json.dumps({k: v for k, v in report.items() if k != "push"} | {
        "push": {k: v for k, v in push.items() if k != "samples"}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
