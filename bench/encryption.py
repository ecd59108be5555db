#!/usr/bin/env python
"""What encryption at rest costs (issue 23): ingest and recall overhead, and LoCoMo with blind tokens.

Two parts, one JSON (``--only`` runs one of them and replaces just that section of an
existing report):

* **latency**: one real Daphne on a fresh data dir and key store (both temp), two
  namespaces made by ``manage.py create_namespace``: ``plain`` and ``sealed``
  (``--encrypted``), each with its own agent key, the same texts (bench/corpus.py).
  Ingest goes block by block (``--block`` memories through ``POST /api/v1/memories/batch``
  in ``--batch`` requests), plain and sealed taking turns, who goes first alternating per
  block; after each turn the bench waits until the server's CPU is idle, so work done after
  answering is charged to the namespace that caused it. Then recall: every query in every
  mode (vector, lexical, hybrid) to both namespaces, back to back, the order of the modes
  rotating and plain/sealed alternating per query, one keep-alive connection each, 20
  warm-up queries then ``--queries`` timed. Machine noise falls on both sides alike, so
  the ratios sealed/plain are the result; absolute times are whatever this machine gave.
* **locomo**: in this process, through the service layer (as bench/locomo.py), every turn
  of the chosen LoCoMo conversations stored twice, in a plain and an encrypted namespace
  per conversation; every question recalled in both with the defaults (hybrid, top 20,
  padded to k) and scored as locomo.py scores (evidence R@k, MRR; overall and per
  category). Nothing is tuned here: the same settings with encryption off and on.

Targets (issue 23; ``--check`` exits 1 on a fail): sealed/plain <= 1.10 for ingest (wall
seconds per memory) and for recall p50 and p95 in each mode; LoCoMo |dR@5| and |dMRR| <= 0.01.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import locomo
from bench.corpus import generate_memories, generate_queries
from bench.recall_latency import (
    cpu_seconds,
    free_port,
    manage,
    post,
    start_server,
    stats_ms,
    stop_server,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP = 20
SIDES = ("plain", "sealed")  # namespace slugs too
MODES = ("vector", "lexical", "hybrid")
LIMIT = 1.10  # sealed/plain
LOCOMO_LIMIT = 0.01  # |sealed - plain| for R@5 and MRR
HASH_EMBEDDER = "bench.hash_embedder.HashEmbedder"


class Side:
    """One namespace of the shared server, behind its own keep-alive connection and key."""

    def __init__(self, name: str, port: int, key: str, pid: int) -> None:
        self.name, self.pid = name, pid
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False,
                                   headers={"Authorization": f"Bearer {key}"})

    def ingest(self, memories: list[dict[str, Any]], batch: int) -> None:
        for i in range(0, len(memories), batch):
            chunk = memories[i : i + batch]
            stored = post(self.client, "/api/v1/memories/batch", {"memories": chunk}, 201).json()
            if stored["count"] != len(chunk):
                raise RuntimeError("batch response count does not match the request")

    def recall(self, query: str, mode: str) -> tuple[int, dict[str, float]]:
        """One recall; the number of hits and the Server-Timing stages (ms)."""
        response = post(self.client, "/api/v1/recall", {"query": query, "k": 10, "mode": mode}, 200)
        answer = response.json()
        if answer["mode"] != mode:
            raise RuntimeError(f"asked for {mode} recall, the server ran {answer['mode']}")
        stages = {}
        for part in response.headers.get("server-timing", "").split(","):
            name, _, duration = part.strip().partition(";dur=")
            if duration:
                stages[name] = float(duration)
        return len(answer["results"]), stages


def settle(pid: int, timeout: float = 15.0) -> float:
    """Wait until the server's CPU is idle (at most one clock tick in 0.1 s); seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        before = cpu_seconds(pid)
        time.sleep(0.1)
        if cpu_seconds(pid) - before <= 0.011:
            break
    return time.perf_counter() - start


def ingest_blocks(sides: dict[str, Side], memories: list[dict[str, Any]], args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    """Each block to both namespaces in turn; wall (requests, and until the CPU is idle) and
    server CPU seconds per side."""
    blocks = []
    pid = sides["plain"].pid
    bar = tqdm(total=2 * len(memories), desc="ingest (plain+sealed)", unit="mem")
    for i, start in enumerate(range(0, len(memories), args.block)):
        chunk = memories[start : start + args.block]
        order = SIDES if i % 2 == 0 else SIDES[::-1]
        row: dict[str, Any] = {"from": start, "to": start + len(chunk), "first": order[0]}
        for name in order:
            cpu, t0 = cpu_seconds(pid), time.perf_counter()
            sides[name].ingest(chunk, args.batch)
            wall = time.perf_counter() - t0
            waited = settle(pid)
            row |= {f"{name}_s": wall, f"{name}_settled_s": wall + waited,
                    f"{name}_cpu_s": cpu_seconds(pid) - cpu}
            bar.update(len(chunk))
        blocks.append(row)
    bar.close()
    return blocks


def ingest_summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Memories/s and seconds per memory per side, and sealed/plain of each."""
    count = sum(b["to"] - b["from"] for b in blocks)
    out: dict[str, Any] = {"memories_per_side": count}
    for name in SIDES:
        wall = sum(b[f"{name}_s"] for b in blocks)
        out[name] = {"per_s": count / wall, "wall_s": wall,
                     "settled_s": sum(b[f"{name}_settled_s"] for b in blocks),
                     "server_cpu_s": sum(b[f"{name}_cpu_s"] for b in blocks)}
    out["ratios"] = {key: out["sealed"][key] / out["plain"][key]
                     for key in ("wall_s", "settled_s", "server_cpu_s")}
    per_block = [b["sealed_s"] / b["plain_s"] for b in blocks]
    out["ratios"]["median_block_wall"] = float(np.median(per_block))
    return out


def recall_rounds(sides: dict[str, Side], queries: list[str]) -> dict[str, Any]:
    """Every query in every mode to both namespaces back to back; modes rotate per query,
    plain/sealed alternate per query and mode."""
    latencies: dict[str, list[float]] = defaultdict(list)
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    warmup = generate_queries(WARMUP, seed=7)
    settle(sides["plain"].pid)
    for i, query in enumerate(tqdm(warmup + queries, desc="recall", unit="q")):
        modes = MODES[i % 3:] + MODES[: i % 3]
        for j, mode in enumerate(modes):
            for name in (SIDES if (i + j) % 2 == 0 else SIDES[::-1]):
                t0 = time.perf_counter()
                found, timing = sides[name].recall(query, mode)
                elapsed = time.perf_counter() - t0
                if not found:
                    raise RuntimeError(f"{name} {mode} recall: no results for {query!r}")
                if i < len(warmup):
                    continue
                latencies[f"{name}_{mode}"].append(elapsed)
                for stage, ms in timing.items():
                    stages[f"{name}_{mode}"][stage].append(ms / 1000)
    series = {key: {**stats_ms(v), "server_timing": {s: stats_ms(t) for s, t in stages[key].items()}}
              for key, v in latencies.items()}
    ratios = {f"{mode}_{p}": series[f"sealed_{mode}"][p] / series[f"plain_{mode}"][p]
              for mode in MODES for p in ("p50", "p95", "mean")}
    paired = {mode: float(np.median(np.asarray(latencies[f"sealed_{mode}"])
                                     / np.asarray(latencies[f"plain_{mode}"]))) for mode in MODES}
    return {"series": series, "ratios": ratios, "paired_median_ratio": paired}


def code_state() -> dict[str, Any]:
    """The commit measured and the files under apps/ that differ from it (a shared tree is
    often mid-change: the numbers are for that code)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "changed_under_apps": git("status", "--porcelain", "--", "apps").splitlines()}


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    """The server, the two namespaces, ingest, recall; the latency section of the report."""
    work = Path(tempfile.mkdtemp(prefix="mw-bench-enc-"))
    data_dir, keystore = work / "data", work / "keystore"
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(data_dir), "MEMORYWEB_KEYSTORE_DIR": str(keystore),
           "MEMORYWEB_KEY_PROVIDER": "file", "MEMORYWEB_KEK_PATH": "", "MEMORYWEB_RATE_LIMIT": "",
           **({"MEMORYWEB_EMBEDDER": HASH_EMBEDDER} if args.embedder == "hash" else {}),
           **dict(kv.split("=", 1) for kv in args.server_env)}
    memories, queries = generate_memories(args.n), generate_queries(args.queries)
    load_before, started = os.getloadavg(), time.perf_counter()
    try:
        manage(env, "migrate", "-v0")
        keys = {}
        for name in SIDES:
            manage(env, "create_namespace", name, *(["--encrypted"] if name == "sealed" else []))
            keys[name] = manage(env, "create_api_key", "--namespace", name, "--role", "agent",
                                "--agent-id", f"bench-{name}").splitlines()[-1].strip()
        port = free_port()
        proc = start_server(env, port, work / "daphne.log")
        try:
            sides = {name: Side(name, port, keys[name], proc.pid) for name in SIDES}
            for side in sides.values():  # load the model; untimed
                side.recall("load the model", "hybrid")
            blocks = ingest_blocks(sides, memories, args)
            recall = recall_rounds(sides, queries)
            rss = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                           if line.startswith("VmHWM")).split()[1]) / 1024
        finally:
            for side in locals().get("sides", {}).values():
                side.client.close()
            stop_server(proc)
        sealed_on_disk = "mwenc1:" in manage(env, "shell", "-c", (
            "from django.db import connection; c = connection.cursor(); c.execute("
            "\"select m.content from memories_memory m join tenancy_namespace n on n.id = m.namespace_id "
            "where n.slug = 'sealed' limit 1\"); print(c.fetchone()[0][:10])"))
    finally:
        if args.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": {"n": args.n, "block": args.block, "batch": args.batch, "queries": args.queries,
                           "warmup": WARMUP, "k": 10, "seed": 42, "embedder": args.embedder,
                           "server_env": args.server_env},
            "duration_s": time.perf_counter() - started, "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(), "server_peak_rss_mb": rss,
            "sealed_namespace_holds_ciphertext": sealed_on_disk,
            "ingest": {**ingest_summary(blocks), "blocks": blocks}, "recall": recall}


def run_locomo(args: argparse.Namespace) -> dict[str, Any]:
    """LoCoMo's chosen conversations in a plain and an encrypted namespace each, in this
    process (Django set up on a temp data dir and key store); hybrid recall scored both ways."""
    data = json.loads(args.locomo_data.read_text())
    indices = {"reporting": locomo.PARTS["reporting"], "tuning": locomo.PARTS["tuning"],
               "both": range(len(data))}[args.locomo_part]
    samples = [data[i] for i in indices if i < len(data)][: args.locomo_conversations or None]
    work = Path(tempfile.mkdtemp(prefix="mw-bench-enc-locomo-"))
    os.environ.update({"MEMORYWEB_KEYSTORE_DIR": str(work / "keystore"), "MEMORYWEB_KEY_PROVIDER": "file",
                       "MEMORYWEB_KEK_PATH": ""})
    started = time.perf_counter()
    try:
        locomo.setup_django(work / "data")
        from apps.core.roles import Role
        from apps.memories import services
        from apps.tenancy.principal import Principal
        from apps.tenancy.services import create_namespace

        principal = Principal(label="bench:encryption", agent_id="locomo", role=Role.SYSTEM)
        ingest_s: dict[str, float] = defaultdict(float)
        known: dict[str, set[str]] = {}
        total = 2 * sum(len(t) for s in samples for _, _, t in locomo.sessions(s["conversation"]))
        with tqdm(total=total, desc="locomo ingest (plain+sealed)", unit="turn") as bar:
            for i, sample in enumerate(samples):
                slug = sample["sample_id"].lower()
                items = [{"content": locomo.turn_text(turn, date), "kind": "episode",
                          "session_id": f"session-{n}", "occurred_at": locomo.session_time(date),
                          "metadata": {"dia_id": turn["dia_id"], "speaker": turn["speaker"], "session": n,
                                       "session_date": date}}
                         for n, date, turns in locomo.sessions(sample["conversation"]) for turn in turns]
                for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                    create_namespace(f"{slug}-{side}", encrypted=side == "sealed")
                    t0 = time.perf_counter()
                    for start in range(0, len(items), 500):
                        services.ingest_many(principal, items[start : start + 500],
                                             namespace=f"{slug}-{side}")
                        bar.update(len(items[start : start + 500]))
                    ingest_s[side] += time.perf_counter() - t0
                known[slug] = {item["metadata"]["dia_id"] for item in items}
        scores = {side: defaultdict(list) for side in SIDES}
        per_category = {side: defaultdict(lambda: defaultdict(list)) for side in SIDES}
        latency: dict[str, list[float]] = defaultdict(list)
        identical = skipped = 0
        questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
        if args.locomo_questions:
            questions = questions[: args.locomo_questions]
        for q, (slug, qa) in enumerate(tqdm(questions, desc="locomo recall", unit="q")):
            evidence = set(locomo.evidence_ids(qa.get("evidence", [])))
            if not evidence or not evidence <= known[slug]:
                skipped += 1
                continue
            ranked = {}
            for side in (SIDES if q % 2 == 0 else SIDES[::-1]):
                t0 = time.perf_counter()
                hits = locomo.hybrid_hits(principal, qa["question"], f"{slug}-{side}")
                latency[side].append(time.perf_counter() - t0)
                ranked[side] = [h.memory.metadata["dia_id"] for h in hits]
                for name, value in locomo.evidence_scores(evidence, ranked[side]).items():
                    scores[side][name].append(value)
                    per_category[side][qa["category"]][name].append(value)
            identical += ranked["plain"] == ranked["sealed"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    overall = {side: {n: locomo.mean(v) for n, v in scores[side].items()} for side in SIDES}
    return {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": {"data": str(args.locomo_data), "part": args.locomo_part, "mode": "hybrid",
                           "k": max(locomo.KS), "pad_to_k": True, "settings": "defaults, nothing tuned",
                           "conversations": [s["sample_id"] for s in samples]},
            "duration_s": time.perf_counter() - started,
            "turns_per_side": sum(len(v) for v in known.values()), "questions": len(scores["plain"]["MRR"]),
            "skipped_unresolvable": skipped, "identical_top20": identical,
            "ingest_s": dict(ingest_s), "ingest_ratio": ingest_s["sealed"] / ingest_s["plain"],
            "recall_p50_ms": {s: float(np.median(latency[s]) * 1000) for s in SIDES},
            "overall": overall,
            "delta": {n: overall["sealed"][n] - overall["plain"][n] for n in overall["plain"]},
            "by_category": {side: locomo.by_category(per_category[side]) for side in SIDES}}


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: value, limit, pass/fail."""
    checks: dict[str, tuple[float, float]] = {}
    if lat := report.get("latency"):
        checks["ingest_wall_sealed_over_plain"] = (lat["ingest"]["ratios"]["wall_s"], LIMIT)
        for mode in MODES:
            for p in ("p50", "p95"):
                checks[f"recall_{mode}_{p}_sealed_over_plain"] = (
                    lat["recall"]["ratios"][f"{mode}_{p}"], LIMIT)
    if loc := report.get("locomo"):
        for metric in ("R@5", "MRR"):
            checks[f"locomo_abs_delta_{metric}"] = (abs(loc["delta"][metric]), LOCOMO_LIMIT)
    return {name: {"value": value, "limit": f"<= {limit}", "result": "pass" if value <= limit else "fail"}
            for name, (value, limit) in checks.items()}


def chart(report: dict[str, Any], path: Path) -> None:
    """Ratios sealed/plain with the 1.10 line; LoCoMo metrics plain vs sealed side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, loc = report.get("latency"), report.get("locomo")
    panels = [p for p in (lat, loc) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    axes = list(axes[0])
    if lat:
        ax = axes.pop(0)
        names = ["ingest\nwall", "ingest\nserver CPU"] + [f"{m}\n{p}" for m in MODES for p in ("p50", "p95")]
        values = [lat["ingest"]["ratios"]["wall_s"], lat["ingest"]["ratios"]["server_cpu_s"]] + [
            lat["recall"]["ratios"][f"{m}_{p}"] for m in MODES for p in ("p50", "p95")]
        colors = ["#1b9e77" if v <= LIMIT else "#d95f02" for v in values]
        bars = ax.bar(range(len(values)), values, color=colors)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.axhline(LIMIT, color="grey", ls="--", lw=1, label=f"target {LIMIT:.2f}")
        ax.axhline(1.0, color="black", lw=0.6)
        ax.set_xticks(range(len(values)), names, fontsize=8)
        ax.set_ylim(0, max(1.3, max(values) * 1.1))
        ax.set(ylabel="encrypted / plain", title=f"Overhead at {lat['parameters']['n']:,} memories "
               f"({lat['parameters']['embedder']}), {lat['parameters']['queries']} queries per mode")
        ax.legend(fontsize=8)
    if loc:
        ax = axes.pop(0)
        metrics = [f"R@{k}" for k in locomo.KS] + ["MRR"]
        for i, (side, color) in enumerate((("plain", "#7570b3"), ("sealed", "#e7298a"))):
            bars = ax.bar([x + i * 0.4 for x in range(len(metrics))],
                          [loc["overall"][side][m] for m in metrics], 0.4, color=color,
                          label="encrypted" if side == "sealed" else side)
            ax.bar_label(bars, fmt="%.3f", fontsize=6)
        ax.set_xticks([x + 0.2 for x in range(len(metrics))], metrics)
        ax.set_ylim(0, 1)
        ax.set(ylabel="evidence recall / MRR", title=f"LoCoMo hybrid, {loc['parameters']['part']} part, "
               f"{loc['questions']} questions (dR@5 {loc['delta']['R@5']:+.3f}, "
               f"dMRR {loc['delta']['MRR']:+.3f})")
        ax.legend(fontsize=8)
    fig.suptitle(f"Encryption at rest: encrypted vs plain namespace, {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(report: dict[str, Any]) -> None:
    """The table the acceptance reads."""
    if lat := report.get("latency"):
        ing = lat["ingest"]
        print(f"\n== latency at {lat['parameters']['n']:,} memories per namespace "
              f"({lat['parameters']['embedder']}, "
              f"loadavg {lat['loadavg_before'][0]:.2f} -> {lat['loadavg_after'][0]:.2f})")
        print(f"{'':24}{'plain':>10}{'sealed':>10}{'ratio':>8}")
        print(f"{'ingest memories/s':24}{ing['plain']['per_s']:10.1f}{ing['sealed']['per_s']:10.1f}"
              f"{ing['ratios']['wall_s']:8.3f}  (time ratio; server CPU {ing['ratios']['server_cpu_s']:.3f}, "
              f"median block {ing['ratios']['median_block_wall']:.3f})")
        series, ratios = lat["recall"]["series"], lat["recall"]["ratios"]
        for mode in MODES:
            for p in ("p50", "p95"):
                print(f"{mode + ' ' + p + ' ms':24}{series['plain_' + mode][p]:10.1f}"
                      f"{series['sealed_' + mode][p]:10.1f}{ratios[f'{mode}_{p}']:8.3f}")
    if loc := report.get("locomo"):
        print(f"\n== LoCoMo hybrid, {loc['parameters']['part']} part: {loc['questions']} questions, "
              f"{loc['identical_top20']} with identical top 20")
        print(f"{'':8}" + "".join(f"{m:>8}" for m in ("R@5", "R@10", "MRR")))
        for side in SIDES:
            print(f"{side:8}" + "".join(f"{loc['overall'][side][m]:8.3f}" for m in ("R@5", "R@10", "MRR")))
        print(f"{'delta':8}" + "".join(f"{loc['delta'][m]:+8.3f}" for m in ("R@5", "R@10", "MRR")))
    for name, target in report["targets"].items():
        print(f"target {name}: {target['value']:.3f} {target['limit']} -> {target['result'].upper()}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1] + (
            "\nExamples:\n"
            "  .venv/bin/python bench/encryption.py               # 10,000 each + LoCoMo reporting part\n"
            "  .venv/bin/python bench/encryption.py --only latency --embedder hash   # crypto's share\n"
            "  .venv/bin/python bench/encryption.py --n 300 --queries 30 --locomo-conversations 1 \\\n"
            "      --locomo-questions 40 --output /tmp/enc.json          # smoke run, results/ untouched"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="memories per namespace (default 10000)")
    parser.add_argument("--block", type=int, default=1000, help="memories per interleaved ingest turn (1000)")
    parser.add_argument("--batch", type=int, default=500, help="memories per batch request, max 1000 (500)")
    parser.add_argument("--queries", type=int, default=400,
                        help=f"timed queries per mode per namespace, after {WARMUP} warm-up (400)")
    parser.add_argument("--embedder", choices=("minilm", "hash"), default="minilm",
                        help="the server's embedder: minilm (deployed) or bench/hash_embedder.py (fast, "
                             "so the encryption's share of the time shows more)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server, repeatable")
    parser.add_argument("--only", choices=("latency", "locomo"),
                        help="run one part; an existing --output keeps the other part's section")
    parser.add_argument("--locomo-data", type=Path, default=locomo.DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--locomo-part", choices=("reporting", "tuning", "both"), default="reporting",
                        help="conversations 6-10 (reporting, default), 1-5 (tuning) or all")
    parser.add_argument("--locomo-conversations", type=int, default=0, help="first N of the part (0: all)")
    parser.add_argument("--locomo-questions", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--keep-data", action="store_true", help="keep the latency part's temp dirs")
    parser.add_argument("--output", type=Path, default=RESULTS / "encryption.json",
                        help="JSON report; the PNG next to it (default bench/results/encryption.json)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000")
    if args.n < 1 or args.queries < 1 or args.block < 1:
        parser.error("--n, --queries and --block must be >= 1")
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {}
    if args.only and args.output.exists():
        report = json.loads(args.output.read_text())
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join([".venv/bin/python bench/encryption.py", *given])
    code = code_state()
    if args.only != "locomo":
        report["latency"] = {"command": command, "code": code, **run_latency(args)}
    if args.only != "latency":
        report["locomo"] = {"command": command, "code": code, **run_locomo(args)}
    report |= {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(), "loadavg": os.getloadavg()},
               "notes": ["Ratios are encrypted ('sealed') / plain from one interleaved run: what counts.",
                         "Protocol: the docstring of bench/encryption.py and bench/README.md."]}
    report["targets"] = judge(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    png = args.output.with_suffix(".png")
    chart(report, png)
    summary(report)
    print(f"wrote {args.output} and {png}")
    return 1 if args.check and any(t["result"] == "fail" for t in report["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
