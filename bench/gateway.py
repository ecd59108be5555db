#!/usr/bin/env python
"""The memory gateway's added latency over calling the upstream directly (issue 22).

A real Daphne serves MemoryWeb on a fresh data directory (embedded SQLite + local Chroma,
the MiniLM embedder: the default configuration) with one namespace of --memories
(bench/corpus.py, batch ingest). Its gateway's OpenAI upstream is the fake LLM API of the
bench's FastUpstream (an asyncio server on a thread of this process, on loopback), which
answers chat completions at once, as JSON or as SSE. The client is httpx, one keep-alive
connection per series, so the client's own overhead is the same on both sides.

Healthy (--requests queries of bench/corpus.py's generate_queries, one user turn each,
after a warm-up), each query sends, in an order that rotates per query so machine noise
hits every series alike:

* ``direct``: POST the fake's /v1/chat/completions (non-streaming: total time);
* ``proxy``: the same bytes to /proxy/v1/chat/completions with a MemoryWeb agent key
  (mode full: recall, screen, inject, forward);
* ``direct_stream`` / ``proxy_stream``: the same with ``"stream": true``, time to the first
  body chunk (TTFC) and to the end;
* ``recall``: POST /api/v1/recall with the gateway's own parameters (hybrid, k =
  MEMORYWEB_GATEWAY_RECALL_K, min_score = MEMORYWEB_GATEWAY_MIN_SCORE).

Added latency is paired: proxy minus direct for the same query (and TTFC minus TTFC).
Failing (a second Daphne whose vector store is a Chroma server, --fail-memories memories):
with Chroma stopped (``error``: recall raises at once, the gateway fails open) the same
direct/proxy pairs; then with a listener on Chroma's port that never answers (``hang``:
recall waits until the recall budget, MEMORYWEB_GATEWAY_RECALL_BUDGET_MS, fails it open)
proxy requests one after the other, each with a client timeout of --hang-timeout.

Targets (issue 22; --check exits 1 on a fail):
* added p95 (non-streaming total, and streaming TTFC) <= recall p95 + 5 ms;
* memory core failing: every request answered, its added latency p95 <= the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

try:
    from bench.corpus import generate_memories, generate_queries
    from bench.recall_latency import free_port, manage, start_server, stats_ms, stop_server
except ImportError:  # run as a script, bench/ is sys.path[0]
    from corpus import generate_memories, generate_queries
    from recall_latency import free_port, manage, start_server, stats_ms, stop_server

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE, AGENT, MODEL = "gateway-bench", "bench-agent", "gpt-4o"
SERIES = ("direct", "proxy", "direct_stream", "proxy_stream", "recall")
FAIL_SERIES = SERIES[:4]
WARMUP = 20
SLACK_MS = 5.0  # the allowance over the recall p95


class FastUpstream:
    """OpenAI's chat completions on loopback, answering at once (asyncio, its own thread).
    Not the tests' fake (tests/helpers/fake_llm.py): http.server sends headers and body
    apart without TCP_NODELAY, and a delayed ACK then holds the body ~40 ms now and then
    (Nagle), noise larger than what is measured. Here JSON goes in one send."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _handle(self, reader, writer) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                if body.get("stream"):
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                    await writer.drain()
                    for event in _events(body.get("model", "")):
                        writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                else:
                    data = json.dumps(_answer(body.get("model", ""))).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n" % len(data) + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


REPLY = "Hello from the fake upstream."


def _answer(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": REPLY}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}}


def _events(model: str) -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    deltas = [{"role": "assistant", "content": ""}, *({"content": w + " "} for w in REPLY.split()), {}]
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None if d else "stop"}]}
              for d in deltas]
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def chat_body(query: str, stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "stream": stream,
                       "messages": [{"role": "user", "content": query}]}).encode()


class Target:
    """One side of the comparison: a base URL and its key, behind a keep-alive connection."""

    def __init__(self, url: str, key: str, timeout: float = 60) -> None:
        self.url = url
        self.client = httpx.Client(timeout=timeout, trust_env=False, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})

    def chat(self, query: str) -> tuple[float, httpx.Headers]:
        """Non-streaming: seconds to the whole answer, and its headers."""
        start = time.perf_counter()
        response = self.client.post(self.url, content=chat_body(query, False))
        elapsed = time.perf_counter() - start
        if response.status_code != 200 or "choices" not in response.json():
            raise RuntimeError(f"POST {self.url}: {response.status_code} {response.text[:300]}")
        return elapsed, response.headers

    def stream(self, query: str) -> tuple[float, float, httpx.Headers]:
        """Streaming: seconds to the first body chunk and to the end, and the headers."""
        start = time.perf_counter()
        with self.client.stream("POST", self.url, content=chat_body(query, True)) as response:
            if response.status_code != 200:
                raise RuntimeError(f"POST {self.url} (stream): {response.status_code}")
            first, chunks = None, []
            for chunk in response.iter_raw():
                if chunk and first is None:
                    first = time.perf_counter() - start
                chunks.append(chunk)
        total = time.perf_counter() - start
        if first is None or b"[DONE]" not in b"".join(chunks):
            raise RuntimeError(f"POST {self.url} (stream): incomplete stream")
        return first, total, response.headers



class Site:
    """A Daphne with the gateway pointed at the fake, and the clients of each series."""

    def __init__(self, env: dict[str, str], fake: FastUpstream, key: str, log: Path) -> None:
        port = free_port()
        self.proc = start_server(env, port, log)
        self.pid, base = self.proc.pid, f"http://127.0.0.1:{port}"
        self.direct = Target(fake.openai_url + "/chat/completions", "sk-bench-direct")
        self.proxy = Target(base + "/proxy/v1/chat/completions", key)
        self.rest = httpx.Client(base_url=base, timeout=60, trust_env=False,
                                 headers={"Authorization": f"Bearer {key}"})

    def ingest(self, memories: list[dict[str, Any]], batch: int) -> float:
        """Batch ingest, then wait for the vector outbox to drain; seconds taken."""
        start = time.perf_counter()
        for i in tqdm(range(0, len(memories), batch), desc="ingest", unit="batch", leave=False):
            answer = self.rest.post("/api/v1/memories/batch", json={"memories": memories[i:i + batch]},
                                    timeout=600)
            if answer.status_code != 201:
                raise RuntimeError(f"batch ingest: {answer.status_code} {answer.text[:300]}")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.rest.get("/readiness").json().get("outbox_backlog", 0) == 0:
                break
            time.sleep(1)
        return time.perf_counter() - start

    def recall(self, query: str, k: int, min_score: float) -> tuple[float, int, dict[str, float]]:
        """The REST recall with the gateway's parameters: seconds, hits, Server-Timing (ms)."""
        start = time.perf_counter()
        response = self.rest.post("/api/v1/recall", json={"query": query, "k": k, "mode": "hybrid",
                                                          "min_score": min_score})
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"recall: {response.status_code} {response.text[:300]}")
        stages = {}
        for part in response.headers.get("server-timing", "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            if duration:
                stages[name] = float(duration)
        return elapsed, len(response.json()["results"]), stages

    def close(self) -> None:
        for client in (self.direct.client, self.proxy.client, self.rest):
            client.close()
        stop_server(self.proc)


def interleaved(site: Site, queries: list[str], series: tuple[str, ...], desc: str,
                args: argparse.Namespace) -> dict[str, Any]:
    """Each query through every series, the order rotating per query; raw samples (s) and
    what the proxy's headers said."""
    samples: dict[str, list[float]] = {name: [] for name in series}
    samples |= {"direct_stream_total": [], "proxy_stream_total": []}
    stages: list[dict[str, float]] = []  # per recall: a stage may be in some only (prefetch)
    told: dict[str, list] = {"injected": [], "fail_open": [], "recall_hits": []}

    def note(headers: httpx.Headers) -> None:
        told["injected"].append(int(headers.get("x-memory-injected", "0")))
        told["fail_open"].append(headers.get("x-memory-fail-open"))

    def proxy(q: str) -> None:
        elapsed, headers = site.proxy.chat(q)
        samples["proxy"].append(elapsed)
        note(headers)

    def stream(who: str, q: str) -> None:
        ttfc, total, headers = getattr(site, who).stream(q)
        samples[f"{who}_stream"].append(ttfc)
        samples[f"{who}_stream_total"].append(total)
        if who == "proxy":
            note(headers)

    def recall(q: str) -> None:
        elapsed, hits, timing = site.recall(q, args.recall_k, args.min_score)
        samples["recall"].append(elapsed)
        told["recall_hits"].append(hits)
        stages.append({stage: ms / 1000 for stage, ms in timing.items()})

    calls: dict[str, Callable[[str], None]] = {
        "direct": lambda q: samples["direct"].append(site.direct.chat(q)[0]), "proxy": proxy,
        "recall": recall, "direct_stream": lambda q: stream("direct", q),
        "proxy_stream": lambda q: stream("proxy", q)}
    for i, query in enumerate(tqdm(queries, desc=desc, unit="q", leave=False)):
        turn = i % len(series)
        for name in series[turn:] + series[:turn]:
            calls[name](query)
    return {"samples": samples, "stages": stages, "told": told}


def summarize(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Percentiles per series (warm-up dropped), paired added latency, header counts."""
    samples = {name: values[warmup:] for name, values in raw["samples"].items() if values}
    out: dict[str, Any] = {name: stats_ms(values) for name, values in samples.items()}
    added = {"added": ("proxy", "direct"), "added_ttfc": ("proxy_stream", "direct_stream"),
             "added_stream_total": ("proxy_stream_total", "direct_stream_total")}
    kept: dict[str, list[float]] = {"recall": samples.get("recall", [])}
    for name, (proxy, direct) in added.items():
        if proxy in samples and direct in samples:
            kept[name] = [p - d for p, d in zip(samples[proxy], samples[direct], strict=True)]
            out[name] = stats_ms(kept[name])
    out["_samples"] = kept  # raw seconds, for the chart's CDFs (main() moves them)
    timed = raw["stages"][warmup:]  # warm-up recalls dropped; each stage over the recalls that had it
    if names := sorted({stage for timing in timed for stage in timing}):
        out["recall"]["server_timing"] = {s: stats_ms([t[s] for t in timed if s in t]) for s in names}
    told = raw["told"]
    injected = told["injected"][2 * warmup:]
    out["proxy_headers"] = {"requests": len(injected), "with_injection": sum(1 for n in injected if n),
                            "injected_mean": float(np.mean(injected)) if injected else 0.0,
                            "fail_open": dict(Counter(r for r in told["fail_open"][2 * warmup:] if r))}
    if told["recall_hits"]:
        out["recall"]["hits_mean"] = float(np.mean(told["recall_hits"][warmup:]))
    return out


def hang(site: Site, queries: list[str], args: argparse.Namespace) -> list[dict]:
    """Proxy requests one by one while recall hangs; stop after two client timeouts."""
    rows, timeouts = [], 0
    slow = Target(site.proxy.url, site.proxy.client.headers["authorization"].split(" ", 1)[1],
                  timeout=args.hang_timeout)
    try:
        for query in tqdm(queries[: args.hang_requests], desc="hang", unit="q", leave=False):
            direct, _ = site.direct.chat(query)
            row: dict[str, Any] = {"direct_ms": direct * 1000, "proxy_ms": None, "added_ms": None}
            rows.append(row)
            try:
                elapsed, headers = slow.chat(query)
            except httpx.TimeoutException:
                row["client_timeout_s"], timeouts = args.hang_timeout, timeouts + 1
                if timeouts >= 2:
                    break
                continue
            row |= {"proxy_ms": elapsed * 1000, "added_ms": (elapsed - direct) * 1000,
                    "fail_open": headers.get("x-memory-fail-open")}
            timeouts = 0
    finally:
        slow.client.close()
    return rows


def healthy_phase(args: argparse.Namespace, fake: FastUpstream, work: Path, base_env: dict[str, str],
                  queries: list[str]) -> dict[str, Any]:
    """The 10,000-memory namespace on the default (embedded) stores."""
    data_dir = args.reuse_data or work / "data"
    env = {**base_env, "MEMORYWEB_DATA_DIR": str(data_dir)}
    if not args.reuse_data:
        manage(env, "migrate", "-v0")
        manage(env, "create_namespace", NAMESPACE)
    key = manage(env, "create_api_key", "--namespace", NAMESPACE, "--role", "agent",
                 "--agent-id", AGENT).splitlines()[-1].strip()
    site = Site(env, fake, key, work / "daphne.log")
    try:
        ingest_s = 0.0
        if not args.reuse_data:
            ingest_s = site.ingest(generate_memories(args.memories), args.batch)
        site.recall("load the model", 1, 0.0)  # untimed: the model's first load
        raw = interleaved(site, generate_queries(WARMUP, seed=7) + queries, SERIES, "healthy", args)
        result = summarize(raw, WARMUP)
        result["ingest"] = {"memories": 0 if args.reuse_data else args.memories, "wall_s": ingest_s,
                            "reused_data_dir": str(args.reuse_data) if args.reuse_data else None}
        return result
    finally:
        site.close()


def failing_phase(args: argparse.Namespace, fake: FastUpstream, work: Path, base_env: dict[str, str],
                  queries: list[str]) -> dict[str, Any]:
    """A second server on a Chroma server: Chroma stopped (error), then never answering (hang)."""
    chroma_port = free_port()
    chroma_log = (work / "chroma.log").open("wb")
    chroma = subprocess.Popen([str(Path(sys.executable).parent / "chroma"), "run", "--path",
                               str(work / "chroma-server"), "--host", "127.0.0.1", "--port",
                               str(chroma_port)], stdout=chroma_log, stderr=chroma_log)
    for _ in range(200):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", timeout=2,
                         trust_env=False).status_code == 200:
                break
        time.sleep(0.3)
    else:
        raise RuntimeError("the Chroma server did not start; see " + str(work / "chroma.log"))
    env = {**base_env, "MEMORYWEB_DATA_DIR": str(work / "data-failing"),
           "CHROMA_URL": f"http://127.0.0.1:{chroma_port}"}
    manage(env, "migrate", "-v0")
    manage(env, "create_namespace", NAMESPACE)
    key = manage(env, "create_api_key", "--namespace", NAMESPACE, "--role", "agent",
                 "--agent-id", AGENT).splitlines()[-1].strip()
    site = Site(env, fake, key, work / "daphne-failing.log")
    blackhole = None
    try:
        site.ingest(generate_memories(args.fail_memories, seed=44), args.batch)
        site.recall("load the model", 1, 0.0)
        working = summarize(interleaved(site, queries[:WARMUP], FAIL_SERIES, "failing: working", args), 0)
        chroma.terminate()
        chroma.wait(timeout=30)
        error = summarize(interleaved(site, generate_queries(WARMUP, seed=8) + queries[: args.fail_requests],
                                      FAIL_SERIES, "failing: Chroma stopped", args), WARMUP)
        blackhole = socket.socket()
        blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blackhole.bind(("127.0.0.1", chroma_port))
        blackhole.listen(128)  # never accepts: connections complete, no answer ever comes
        rows = hang(site, queries, args)
        answered = [r["added_ms"] for r in rows if r["added_ms"] is not None]
        # Closing the listener resets the connections recall waits on: do the threads come back?
        blackhole.close()
        blackhole = None
        time.sleep(1)
        try:
            told = site.proxy.chat(queries[0])[1]
            after = {"status": "answered", "fail_open": told.get("x-memory-fail-open")}
        except httpx.TimeoutException:
            after = {"status": "client timeout", "fail_open": None}
        for phase in (working, error):
            phase.pop("_samples")
        return {"memories": args.fail_memories, "working": working, "error": error,
                "hang": {"requests": rows, "sent": len(rows), "answered": len(answered),
                         "added": stats_ms([a / 1000 for a in answered]) if answered else {"count": 0},
                         "after_release": after,
                         "http_threads": int(base_env.get("MEMORYWEB_HTTP_THREADS", 8))}}
    finally:
        if blackhole is not None:
            blackhole.close()
        site.close()
        if chroma.poll() is None:
            chroma.terminate()
            chroma.wait(timeout=30)
        chroma_log.close()


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: value, limit, pass/fail."""
    healthy, budget = report["healthy"], report["parameters"]["budget_ms"]
    limit = healthy["recall"]["p95"] + SLACK_MS
    checks = {"added_p95_le_recall_p95_plus_5ms": (healthy["added"]["p95"], limit),
              "added_ttfc_p95_le_recall_p95_plus_5ms": (healthy["added_ttfc"]["p95"], limit)}
    failing = report.get("failing")
    if failing:
        checks["error_added_p95_le_budget"] = (failing["error"]["added"]["p95"], budget)
        checks["error_added_ttfc_p95_le_budget"] = (failing["error"]["added_ttfc"]["p95"], budget)
        hung = failing["hang"]
        checks["hang_added_p95_le_budget"] = (hung["added"].get("p95", float("inf")), budget)
        checks["hang_all_answered"] = (hung["sent"] - hung["answered"], 0)
    return {name: {"value": value, "limit": f"<= {lim:.2f}", "result": "pass" if value <= lim else "fail"}
            for name, (value, lim) in checks.items()}


def chart(report: dict[str, Any], path: Path) -> None:
    """Healthy percentiles, the added-latency CDFs against the limit, failing added latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    healthy = report["healthy"]
    fig, (bars, cdf, fail) = plt.subplots(1, 3, figsize=(16, 5))
    names = ["direct", "proxy", "added", "direct_stream", "proxy_stream", "added_ttfc", "recall"]
    x, width = np.arange(len(names)), 0.38
    for offset, p, color in ((-width / 2, "p50", "#1b9e77"), (width / 2, "p95", "#d95f02")):
        bars.bar(x + offset, [healthy[n][p] for n in names], width, label=p, color=color)
    limit = healthy["recall"]["p95"] + SLACK_MS
    bars.axhline(limit, color="grey", ls="--", lw=1, label="recall p95 + 5 ms")
    bars.set_xticks(x, ["direct", "proxy", "added", "direct\nTTFC", "proxy\nTTFC", "added\nTTFC",
                        "REST\nrecall"], fontsize=8)
    bars.set(title=f"Healthy, {report['parameters']['memories']:,} memories (ms)", ylabel="ms")
    bars.legend(fontsize=8)
    for name, color in (("added", "#7570b3"), ("added_ttfc", "#e7298a"), ("recall", "#66a61e")):
        values = np.sort(np.asarray(report["samples"][name]) * 1000)
        cdf.plot(values, np.arange(1, len(values) + 1) / len(values), color=color,
                 label={"added": "added (total)", "added_ttfc": "added (TTFC)",
                        "recall": "REST recall"}[name])
    cdf.axvline(limit, color="grey", ls="--", lw=1, label="recall p95 + 5 ms")
    cdf.axhline(0.95, color="black", ls=":", lw=0.8)
    cdf.set(title="CDF (ms)", xlabel="ms", ylabel="share of requests")
    cdf.legend(fontsize=8)
    failing = report.get("failing")
    if failing:
        budget = report["parameters"]["budget_ms"]
        groups = [("working\n(total)", failing["working"]["added"]),
                  ("Chroma stopped\n(total)", failing["error"]["added"]),
                  ("Chroma stopped\n(TTFC)", failing["error"]["added_ttfc"]),
                  ("Chroma hangs\n(total)", failing["hang"]["added"])]
        x = np.arange(len(groups))
        for offset, p, color in ((-width / 2, "p50", "#1b9e77"), (width / 2, "p95", "#d95f02")):
            fail.bar(x + offset, [g.get(p, 0.0) for _, g in groups], width, label=p, color=color)
        fail.axhline(budget, color="grey", ls="--", lw=1, label=f"recall budget {budget:.0f} ms")
        fail.set_xticks(x, [g for g, _ in groups], fontsize=8)
        hung = failing["hang"]
        fail.set(title=f"Added latency, memory core failing (hang: {hung['answered']}/{hung['sent']} "
                 "answered)", ylabel="ms")
        fail.legend(fontsize=8)
    fig.suptitle(f"MemoryWeb gateway vs the upstream called directly, {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report: dict[str, Any]) -> None:
    healthy = report["healthy"]
    print(f"\n== healthy, {report['parameters']['memories']:,} memories ({report['parameters']['requests']} "
          "queries)")
    print(f"{'ms':22}" + "".join(f"{p:>9}" for p in ("p50", "p95", "p99", "mean")))
    for name in ("direct", "proxy", "added", "direct_stream", "proxy_stream", "added_ttfc", "recall"):
        print(f"{name:22}" + "".join(f"{healthy[name][p]:9.1f}" for p in ("p50", "p95", "p99", "mean")))
    print(f"  proxy headers: {healthy['proxy_headers']}")
    failing = report.get("failing")
    if failing:
        for phase, got in ((p, failing[p]) for p in ("working", "error")):
            added, ttfc = got["added"], got["added_ttfc"]
            print(f"== failing/{phase}: added p50/p95 {added['p50']:.1f}/{added['p95']:.1f} ms, TTFC "
                  f"{ttfc['p50']:.1f}/{ttfc['p95']:.1f}; {got['proxy_headers']}")
        print(f"== failing/hang: {failing['hang']['answered']}/{failing['hang']['sent']} answered; "
              f"added {failing['hang']['added']}")
    for name, target in report["targets"].items():
        print(f"target {name}: {target['value']:.2f} {target['limit']} -> {target['result'].upper()}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  .venv/bin/python bench/gateway.py                       # 10,000 memories\n"
               "  .venv/bin/python bench/gateway.py --memories 1000 --requests 60 --fail-requests 30 \\\n"
               "      --output /tmp/gw.json                               # smoke run, results/ untouched\n"
               "  .venv/bin/python bench/gateway.py --keep-data           # then --reuse-data DIR/data")
    parser.add_argument("--memories", type=int, default=10_000, help="memories in the namespace (10000)")
    parser.add_argument("--requests", type=int, default=300,
                        help=f"timed queries, each through every series, after {WARMUP} warm-up (300)")
    parser.add_argument("--batch", type=int, default=500, help="memories per batch request (500)")
    parser.add_argument("--fail-memories", type=int, default=300,
                        help="memories of the failing phase's server (300)")
    parser.add_argument("--fail-requests", type=int, default=100,
                        help="timed queries with Chroma stopped (100); 0 skips the failing phase")
    parser.add_argument("--hang-requests", type=int, default=16,
                        help="proxy requests while Chroma never answers (16)")
    parser.add_argument("--hang-timeout", type=float, default=10.0,
                        help="client timeout (s) of each of those (10)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for both servers, repeatable")
    parser.add_argument("--reuse-data", type=Path, metavar="DIR",
                        help="a data dir kept by --keep-data (its namespace is used, no ingest)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp dir (data, logs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "gateway.json",
                        help="JSON report; the PNG chart is written next to it (default bench/results/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    if args.requests < 1 or args.memories < 1 or not 1 <= args.batch <= 1000:
        parser.error("--requests, --memories >= 1; --batch 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mw-bench-gateway-"))
    (work / "openai.key").write_text("sk-bench-server-key\n")
    extra = dict(kv.split("=", 1) for kv in args.server_env)
    base_env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
                "MEMORYWEB_RATE_LIMIT": "", "MEMORYWEB_ROLLUPS_SCHEDULED": "false", **extra}
    for name in ("DATABASE_URL", "CHROMA_URL", "REDIS_URL"):
        base_env.pop(name, None)
    # Read the server's settings as it will (defaults unless --server-env sets them).
    args.budget_ms = float(extra.get("MEMORYWEB_GATEWAY_RECALL_BUDGET_MS", 300))
    args.recall_k = int(extra.get("MEMORYWEB_GATEWAY_RECALL_K", 8))
    args.min_score = float(extra.get("MEMORYWEB_GATEWAY_MIN_SCORE", 0.3))
    queries = generate_queries(args.requests)
    load_before, started = os.getloadavg(), time.perf_counter()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before},
        "parameters": {"memories": args.memories, "requests": args.requests, "warmup": WARMUP,
                       "batch": args.batch, "budget_ms": args.budget_ms, "recall_k": args.recall_k,
                       "min_score": args.min_score, "fail_memories": args.fail_memories,
                       "fail_requests": args.fail_requests, "hang_requests": args.hang_requests,
                       "hang_timeout_s": args.hang_timeout, "server_env": args.server_env,
                       "client": "httpx (one keep-alive connection per series)", "model": MODEL},
        "notes": ["Protocol: the docstring of bench/gateway.py and docs/performance.md.",
                  "added* are paired per query: proxy minus direct; TTFC = time to the first body chunk."],
    }
    try:
        fake = FastUpstream()
        try:
            env = {**base_env, "MEMORYWEB_GATEWAY_OPENAI_URL": fake.openai_url,
                   "MEMORYWEB_GATEWAY_OPENAI_KEY_FILE": str(work / "openai.key"),
                   # The proxy's own latency: learning extracts offline, off the request path.
                   "MEMORYWEB_GATEWAY_EXTRACTOR": "offline"}
            healthy = healthy_phase(args, fake, work, env, queries)
            kept = healthy.pop("_samples")
            report["samples"] = {name: kept[name] for name in ("added", "added_ttfc", "recall")}
            report["healthy"] = healthy
            if args.fail_requests > 0:
                report["failing"] = failing_phase(args, fake, work, env, queries)
        finally:
            fake.close()
    finally:
        if args.keep_data:
            print(f"kept {work} (data, logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["duration_s"] = time.perf_counter() - started
    report["targets"] = judge(report)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    png = args.output.with_suffix(".png")
    chart(report, png)
    print_summary(report)
    print(f"wrote {args.output} and {png}")
    return 1 if args.check and any(t["result"] == "fail" for t in report["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
