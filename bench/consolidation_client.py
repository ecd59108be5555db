"""bench/consolidation.py's side of the wire: the consolidation API (the one place that
knows its shape, however a server answers: directly, or a job to poll) and what is
measured against the running server (ingest, the consolidate calls, its memory).

A module of its own so the command (bench/consolidation.py) stays its options, its
self-test and the run's order; the scoring is bench/consolidation_data.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from bench.consolidation_data import Corpus, score
from bench.recall_latency import cpu_seconds, manage

NAMESPACE = "consolidation-bench"
DONE = {"done", "completed", "complete", "succeeded", "success", "finished", "ok"}
FAILED = {"failed", "error", "errored", "cancelled", "canceled"}


# --- the consolidation API: the one place that knows its shape ----------------------------

class RouteMissing(RuntimeError):
    """The server has no consolidation route (yet): 404, 405 or 501."""


def consolidate(client: httpx.Client, slug: str, threshold: float | None, *, timeout: float,
                poll_every: float = 1.0, dry_run: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """One call: ``POST /api/v1/namespaces/{slug}/consolidate`` ``{"dry_run": true,
    "threshold"?}`` (``dry_run=False``: applied, ``{"dry_run": false}``); the answer
    (``proposals``, ``conflicts``, and applied ``merged``, ``superseded``, ...) and what the
    call was (status, polls).

    A 200/201 with ``proposals`` is the answer. A 202, or any answer naming a job
    (``status_url``, or ``job``/``job_id``: an id or an object with ``id``/``status_url``;
    MemoryWeb's 202 is the run itself, ``{"id", "state", ...}`` with a ``Location``),
    is polled (GET, ``/api/v1/consolidations/{id}`` for a bare id) until its ``status`` (or
    ``state``) is done, the proposals then read from its ``result`` or the body itself;
    ``progress`` ({done, total} or a fraction) drives a progress bar.
    """
    path = f"/api/v1/namespaces/{slug}/consolidate"
    body: dict[str, Any] = {"dry_run": dry_run} | ({} if threshold is None else {"threshold": threshold})
    deadline = time.monotonic() + timeout
    response = client.post(path, json=body, timeout=timeout)
    meta: dict[str, Any] = {"http_status": response.status_code, "polls": 0, "request": body}
    if response.status_code in (404, 405, 501):
        raise RouteMissing(f"POST {path} answered {response.status_code}: no consolidation route on "
                           "this server (issue 21 item 1 not in this checkout?), or no such namespace. "
                           f"Body: {response.text[:300]}")
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    data = response.json()
    url = _job_url(data)
    if response.status_code == 202 and url is None:
        url = response.headers.get("Location")  # the run itself: {"id", "state", ...}
    if response.status_code == 202 and url is None:
        raise RuntimeError(f"POST {path}: 202 without a job to poll: {str(data)[:500]}")
    if url is not None:
        meta["job_url"] = url
        data = _poll(client, url, deadline, poll_every, meta)
    if not isinstance(data.get("proposals"), list):
        raise RuntimeError(f"POST {path}: no proposals list in the answer: {str(data)[:500]}")
    return data, meta


def _job_url(data: dict[str, Any]) -> str | None:
    if isinstance(data.get("proposals"), list) and str(data.get("status", "done")).lower() in DONE:
        return None  # the answer itself
    if isinstance(data.get("status_url"), str):
        return data["status_url"]
    job = data.get("job", data.get("job_id"))
    if isinstance(job, dict):
        return job.get("status_url") or (f"/api/v1/consolidations/{job['id']}" if "id" in job else None)
    if job is None and "id" in data and ("state" in data or "status" in data):
        job = data["id"]  # the run itself (MemoryWeb's 202: {"id", "state", "progress", ...})
    return f"/api/v1/consolidations/{job}" if isinstance(job, str | int) and job != "" else None


def _poll(client: httpx.Client, url: str, deadline: float, every: float, meta: dict[str, Any]
          ) -> dict[str, Any]:
    with tqdm(desc="consolidate (job)", unit="step", leave=False) as bar:
        while True:
            response = client.get(url)
            meta["polls"] += 1
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:500]}")
            data = response.json()
            status = str(data.get("status", data.get("state", ""))).lower()
            progress = data.get("progress")
            if isinstance(progress, dict) and isinstance(progress.get("total"), int):
                bar.total = progress["total"]
                bar.update(max(0, int(progress.get("done", 0)) - bar.n))
            elif isinstance(progress, int | float):
                bar.total = 100
                bar.update(max(0, round(100 * progress if progress <= 1 else progress) - bar.n))
            if status in DONE or (not status and "proposals" in data):
                return data["result"] if isinstance(data.get("result"), dict) else data
            if status in FAILED:
                raise RuntimeError(f"consolidation job failed: {str(data)[:500]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"consolidation job not done before --timeout: {str(data)[:300]}")
            time.sleep(every)


# --- the server -----------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}


def ingest(client: httpx.Client, corpus: Corpus, batch: int, pid: int) -> tuple[list[str], dict[str, Any]]:
    """The corpus through POST /memories/batch in order; each memory's id, and the numbers."""
    ids: list[str] = []
    duplicates, links, marks = 0, [], [(0, 0.0)]  # (memories stored, seconds) at each tenth
    tenth = max(1, len(corpus.memories) // 10)
    cpu0, started = cpu_seconds(pid), time.perf_counter()
    with tqdm(total=len(corpus.memories), desc="ingest", unit="mem") as bar:
        for i in range(0, len(corpus.memories), batch):
            chunk = corpus.memories[i:i + batch]
            response = client.post("/api/v1/memories/batch", json={"memories": chunk})
            if response.status_code != 201:
                raise RuntimeError(f"POST /api/v1/memories/batch: {response.status_code} "
                                   f"{response.text[:500]}")
            rows = response.json()["results"]
            if len(rows) != len(chunk):
                raise RuntimeError(f"batch answered {len(rows)} rows for {len(chunk)} memories")
            ids += [str(row["id"]) for row in rows]
            duplicates += sum(bool(row.get("duplicate")) for row in rows)
            links += [(i + k, str(row["near_duplicate_of"])) for k, row in enumerate(rows)
                      if row.get("near_duplicate_of")]
            bar.update(len(chunk))
            if len(ids) >= marks[-1][0] + tenth or len(ids) == len(corpus.memories):
                marks.append((len(ids), time.perf_counter() - started))
    wall = time.perf_counter() - started
    if duplicates or len(set(ids)) != len(ids):
        raise RuntimeError(f"{duplicates} memories were deduplicated at ingest: the corpus must be distinct")
    position = {memory_id: i for i, memory_id in enumerate(ids)}
    same_group = sum(corpus.group_of[a] is not None and corpus.group_of[a] == corpus.group_of[position[b]]
                     for a, b in links if b in position)
    hn = {frozenset((h["a"], h["b"])) for h in corpus.hard_negatives}
    return ids, {"memories": len(ids), "wall_s": wall, "per_s": len(ids) / wall,
                 "server_cpu_s": cpu_seconds(pid) - cpu0, "batch": batch,
                 # how the rate changes as the namespace grows: memories/s over each stretch
                 "by_tenth": [{"stored": n1, "per_s": (n1 - n0) / max(t1 - t0, 1e-9)}
                              for (n0, t0), (n1, t1) in pairwise(marks)],
                 "near_duplicate_links_at_ingest": {
                     "total": len(links), "within_a_group": same_group,
                     "hard_negative_pairs": sum(frozenset((a, position[b])) in hn for a, b in links
                                                if b in position)}}


#: A kept data dir's memories, content -> id (the corpus's texts are distinct).
READ_IDS = ("import json; from apps.memories.models import Memory; print(json.dumps([[c, str(i)] for c, i in "
            f"Memory.objects.filter(namespace__slug={NAMESPACE!r}).values_list('content', 'id')]))")


def stored_ids(env: dict[str, str], corpus: Corpus) -> list[str]:
    """--reuse-data: each corpus memory's id in a data dir an earlier run kept (--keep-data),
    matched by content; refused unless it holds exactly this corpus."""
    by_content = dict(json.loads(manage(env, "shell", "-c", READ_IDS).splitlines()[-1]))
    missing = sum(m["content"] not in by_content for m in corpus.memories)
    if missing or len(by_content) != len(corpus.memories):
        raise RuntimeError(f"--reuse-data: the namespace holds {len(by_content)} memories, {missing} of "
                           f"the corpus's {len(corpus.memories)} missing: not this --n/--part/--seed")
    return [by_content[m["content"]] for m in corpus.memories]


def wait_indexed(base_url: str, timeout: float = 300) -> int:
    """Until /readiness reports an empty outbox (every vector written); the backlog left."""
    deadline, backlog = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base_url}/readiness", timeout=10, trust_env=False).json()
        backlog = answer.get("outbox_backlog", 0)
        if backlog == 0:
            return 0
        time.sleep(1)
    return backlog


#: An applied consolidation's counts (apps/lifecycle/representation.py's outcome_row).
APPLIED_COUNTS = ("merged", "superseded", "stale", "conflicts_linked")


def timed_call(client: httpx.Client, args: argparse.Namespace, corpus: Corpus, ids: list[str], pid: int,
               threshold: float | None, dry_run: bool = True) -> dict[str, Any]:
    """One consolidate call (polled to its end): wall and server CPU, the load averages
    before and after, the answer's fields and the proposals scored."""
    load0, cpu0, started = os.getloadavg(), cpu_seconds(pid), time.perf_counter()
    answer, meta = consolidate(client, NAMESPACE, threshold, timeout=args.timeout, dry_run=dry_run)
    wall = time.perf_counter() - started
    used = answer.get("threshold", threshold)
    return {"threshold_requested": threshold,
            "threshold_used": used if isinstance(used, int | float) else None,
            "wall_s": wall, "server_cpu_s": cpu_seconds(pid) - cpu0, "server": proc_status(pid),
            "loadavg_before": load0, "loadavg_after": os.getloadavg(),
            **meta, "answer_fields": {k: v for k, v in answer.items() if k not in ("proposals", "conflicts")},
            "metrics": score(corpus, ids, answer["proposals"], answer.get("conflicts") or [])}


def run_calls(client: httpx.Client, args: argparse.Namespace, corpus: Corpus, ids: list[str], pid: int,
              save: Any) -> list[dict[str, Any]]:
    """The default threshold, then each --thresholds value; the JSON saved after each."""
    runs: list[dict[str, Any]] = []
    for threshold in [None, *args.thresholds]:
        label = "default" if threshold is None else f"{threshold:g}"
        print(f"consolidate (dry run, threshold {label}) ...", flush=True)
        runs.append(timed_call(client, args, corpus, ids, pid, threshold))
        save(runs)
    return runs


def apply_call(client: httpx.Client, args: argparse.Namespace, corpus: Corpus, ids: list[str],
               pid: int) -> dict[str, Any]:
    """--apply: one applied consolidation at the server's default threshold, ``{"dry_run":
    false}`` as the REST route runs it (a job when large, polled); its time and counts."""
    print("consolidate (applied, threshold default) ...", flush=True)
    run = timed_call(client, args, corpus, ids, pid, None, dry_run=False)
    fields = run["answer_fields"]
    if fields.get("dry_run") is not False:
        raise RuntimeError(f"the applied call answered dry_run={fields.get('dry_run')!r}: not applied")
    run["counts"] = {name: fields.get(name) for name in APPLIED_COUNTS}
    run["applied_proposals"] = run["metrics"]["proposals"]
    return run
