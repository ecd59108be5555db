#!/usr/bin/env python
"""Consolidation quality and time: injected near-duplicates found, hard negatives kept apart.

Issue 21 item 7. A deterministic corpus of agent memories (bench/consolidation_data.py:
facts about people, projects, preferences, infrastructure, meetings, decisions, customers,
incidents, written the ways an agent writes them) of --n memories (10,000) holds --groups
(500) near-duplicate groups of 2-4 paraphrases of one fact and --hard-negatives (500) pairs
of facts one number, name, date or negation apart (a fifth of them pairing a new memory
with a group's member); the rest are distinct facts, many on the same topics. The ground
truth says which memory is in which group and which pairs are hard negatives.

A real Daphne on a fresh temp data dir (embedded SQLite + local Chroma; --embedder minilm,
the default model, or hash) gets a namespace and a team-admin key (manage.py), the corpus
through POST /api/v1/memories/batch, then POST /api/v1/namespaces/{slug}/consolidate with
{"dry_run": true} (the server's default threshold) and once per --thresholds value. Scored
per call (bench/consolidation_data.py's ``score``): pairwise precision and recall of the
proposed merges (a pair is right iff both are in one injected group; recall over every
within-group pair), groups matched exactly, hard negatives merged (target 0) and reported as
conflicts, the call's wall and server CPU time, and ingest's (its rate over each tenth of
the corpus: how it changes as the namespace grows). --apply then runs one applied
consolidation, {"dry_run": false} at the default threshold: its wall and server CPU time and
the counts it answers (merged, superseded, stale, conflicts_linked).

Honest tuning (docs/recall.md, "The tuning protocol"): --part tuning (seed 2101) is where a
threshold is chosen from a sweep, --part reporting (seed 2102, the default) is what the
numbers quoted come from; no choice looks at it. Targets (issue 21; --check exits 1 on a
fail), at the default threshold: precision >= 0.95, recall >= 0.80, no hard negative merged,
and with --n >= 100,000 the consolidate call (and the applied one, with --apply) within 600 s.

--keep-data keeps the data dir; --reuse-data DIR runs the calls again on it without
the ingest (100,000 memories took 28 minutes to ingest with MiniLM here, 2026-12-06), the
ids matched by content. A REST call over more than MEMORYWEB_CONSOLIDATE_INLINE_MAX memories answers 202 with
the run, polled until done: its wall time includes up to a second of polling. --apply
changes the data dir: a later --reuse-data of it sees the merged memories superseded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script too

from bench.consolidation_client import (
    NAMESPACE,
    RouteMissing,
    apply_call,
    consolidate,
    ingest,
    run_calls,
    stored_ids,
    wait_indexed,
)
from bench.consolidation_data import Corpus, generate, score, truth_rows
from bench.consolidation_report import chart, choose, summary, targets
from bench.recall_latency import free_port, manage, start_server, stop_server

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = {"tuning": 2101, "reporting": 2102}
EMBEDDERS = {"hash": "bench.hash_embedder.HashEmbedder", "minilm": "minilm-onnx"}
AGENT = "bench-agent"


# --- self-test: no server -------------------------------------------------------------------

def self_test() -> int:
    """The generator's guarantees, the scoring on a hand-made and on fabricated proposals
    (exact expected numbers), the API client against a fake server (404, direct answer,
    202 + polling by status_url or job id, a failed job), the tuning rule, the chart."""
    import re
    from math import comb

    data = sys.modules[generate.__module__]  # the generator's module, however it was imported
    BY_NAME, TEMPLATES, Fact, facts_apart = data.BY_NAME, data.TEMPLATES, data.Fact, data.facts_apart
    failures: list[str] = []

    def check(name: str, ok: bool, detail: Any = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail != "" else ""))
        if not ok:
            failures.append(name)

    # 1. the generator
    a = generate(3000, 7, 60, 60)
    b = generate(3000, 7, 60, 60)
    check("same seed, same corpus", a.memories == b.memories and a.groups == b.groups
          and a.hard_negatives == b.hard_negatives)
    check("another seed, another corpus", generate(3000, 8, 60, 60).memories != a.memories)
    distinct = {" ".join(m["content"].split()) for m in a.memories}
    check("n memories, distinct after whitespace normalisation (as the server dedups)",
          len(a.memories) == 3000 == len(distinct))
    check("60 groups of 2-4", len(a.groups) == 60 and all(2 <= len(g) <= 4 for g in a.groups),
          a.stats()["group_sizes"])
    check("a group states one fact, no memory outside it does",
          all(len({a.facts[m] for m in g}) == 1 and a.facts.count(a.facts[g[0]]) == len(g) for g in a.groups))
    hns = a.hard_negatives
    check("60 hard negatives, each one slot (or the polarity) apart",
          len(hns) == 60 and all(facts_apart(a.facts[h["a"]], a.facts[h["b"]]) == 1 for h in hns))
    check("12 anchored on a group member, the rest outside groups",
          sum(h["anchored"] for h in hns) == 12
          and all((a.group_of[h["a"]] is not None) == h["anchored"] and a.group_of[h["b"]] is None
                  for h in hns))
    check("a hard negative pair is written alike (few words differ)",
          all(0 < len(set(a.memories[h["a"]]["content"].split())
                      ^ set(a.memories[h["b"]]["content"].split())) <= 8 for h in hns))
    check("every phrasing names every slot; negations align with phrasings",
          all({s for s, _ in t.slots} == set(re.findall(r"{(\w+)}", form)) for t in TEMPLATES
              for form in t.forms + t.negated)
          and all(len(t.negated) in (0, len(t.forms)) for t in TEMPLATES))
    small = generate(800, 9, 16, 16)
    check("one-slot-apart count = brute force", small.one_slot_apart_count() == sum(
        facts_apart(x, y) == 1 for x, y in combinations(small.facts, 2)), small.one_slot_apart_count())
    # 2. scoring, hand-made: groups {0,1,2} {3,4}; hard negatives (5,6) and (2,7) (anchored)
    def fact(template: str, negated: bool = False, **values: str) -> Fact:
        return Fact(template, tuple((s, values[s]) for s, _ in BY_NAME[template].slots), negated)

    maria = fact("pref", person="Maria", pref="morning meetings")
    api = {"env": "staging", "service": "API gateway"}
    facts = [maria, maria, maria, fact("timeout", **api, timeout="30"), fact("timeout", **api, timeout="30"),
             fact("timeout", **api, timeout="45"), fact("timeout", **api, timeout="60"),
             maria._replace(negated=True), fact("diet", person="Omar", diet="vegan"),
             fact("diet", person="Lena", diet="vegan")]
    hand = Corpus(seed=0, memories=[{"content": f"memory {i}"} for i in range(10)], facts=facts,
                  groups=[[0, 1, 2], [3, 4]], group_of=[0, 0, 0, 1, 1, None, None, None, None, None],
                  difficulty=["base", "surface", "rephrased", "base", "lexical"] + ["base"] * 5,
                  role=["group"] * 5 + ["hard_negative"] * 3 + ["filler"] * 2,
                  hard_negatives=[{"a": 5, "b": 6, "kind": "number", "slot": "timeout", "anchored": False},
                                  {"a": 2, "b": 7, "kind": "negation", "slot": "negation", "anchored": True}])
    ids = [f"id{i}" for i in range(10)]
    m = score(hand, ids, [{"members": ["id0", "id1", "id2"]}, {"members": ["id3", "id4", "id5"]},
                          {"members": ["id6", "id8", "nope"]}],
              [{"members": ["id5", "id6"], "differs_in": ["number"]},
               {"members": ["id2", "id7"], "differs_in": ["name"]}, {"members": ["id0", "id1"]}])
    expect = {"precision": 4 / 7, "recall": 1.0, "groups_exact": 1, "groups_complete": 2,
              "hard_negatives_merged": 0, "hard_negatives_as_conflicts": 2,
              "hard_negatives_as_conflicts_right_facet": 1,
              "conflict_pairs_within_a_group": 1,
              "unknown_ids": 1, "false_pairs_by_kind": {"one slot apart": 2, "other template": 1}}
    check("hand-made: pairwise P/R, groups, conflicts, false-pair kinds",
          all(m[k] == v for k, v in expect.items()), {k: m[k] for k in expect})
    m = score(hand, ids, [{"members": ["id0", "id1"]}, {"members": ["id7", "id9"]},
                          {"members": ["id5", "id6"]}, {"members": ["id1", "id7"]}], [])
    check("hand-made: a merged negative counts (the anchored one through any member of its group)",
          m["hard_negatives_merged"] == 2 and m["recall"] == 1 / 4 and m["groups_complete"] == 0
          and m["false_pairs_by_kind"].get("injected hard negative") == 1, m["hard_negatives_merged_by_kind"])
    # 3. scoring, fabricated proposals on the generated corpus
    ids = [f"m{i}" for i in range(len(a.memories))]
    perfect = [{"members": [ids[i] for i in g]} for g in a.groups]
    m = score(a, ids, perfect, [])
    check("perfect proposals: P = R = exact = 1, nothing merged wrongly",
          (m["precision"], m["recall"], m["groups_exact_rate"], m["hard_negatives_merged"])
          == (1.0, 1.0, 1.0, 0))
    split = [g for g in a.groups[10:] if len(g) >= 3][:10]
    kept = [g for g in a.groups[10:] if g not in split]
    fillers = [i for i, r in enumerate(a.role) if r == "filler"]
    wrong = [[h["a"], h["b"]] for h in hns[:5]] + [[fillers[2 * k], fillers[2 * k + 1]] for k in range(5)]
    props = [{"members": [ids[i] for i in g]} for g in [*(g[:2] for g in split), *kept, *wrong]]
    conflicts = [{"members": [ids[h["a"]], ids[h["b"]]]} for h in hns[10:30]]
    m = score(a, ids, props, conflicts)
    found = sum(comb(len(g), 2) for g in kept) + len(split)
    total = sum(comb(len(g), 2) for g in a.groups)
    check("fabricated errors: exact P, R, hard negatives merged and as conflicts",
          (m["precision"], m["recall"], m["hard_negatives_merged"], m["hard_negatives_as_conflicts"],
           m["groups_exact"]) == (found / (found + 10), found / total, 5, 20, len(kept)),
          {k: m[k] for k in ("precision", "recall", "hard_negatives_merged", "hard_negatives_as_conflicts")})
    # 4. the API client against a fake server
    answer = {"proposals": [{"members": ["m0", "m1"], "survivor": "m0", "similarity": 0.97}], "conflicts": []}
    seen: list[tuple[str, str, Any]] = []

    def server(mode: str) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content) if request.content else None
            seen.append((request.method, request.url.path, body))
            gets = sum(s[0] == "GET" for s in seen)
            if mode == "404":
                return httpx.Response(404, json={"error": {"code": "not_found"}})
            if request.method == "POST":
                return {"direct": httpx.Response(200, json=answer),
                        "status_url": httpx.Response(202, json={"status_url": "/api/v1/consolidations/c1"}),
                        "job": httpx.Response(202, json={"job": {"id": "j7", "status": "queued"}}),
                        "failed": httpx.Response(202, json={"job": "j8"}),
                        "run": httpx.Response(202, json={"id": "r3", "state": "queued", "result": None}),
                        "location": httpx.Response(202, json={"state": "queued"},
                                                   headers={"Location": "/api/v1/consolidations/r4"}),
                        }[mode]
            if mode == "failed":
                return httpx.Response(200, json={"status": "failed", "error": "boom"})
            if mode in ("run", "location"):  # MemoryWeb's run: state, progress {stage, done, total}
                return httpx.Response(200, json={"state": "running", "result": None, "progress": {
                    "stage": "neighbours", "done": 1, "total": 2}} if gets < 2
                    else {"state": "done", "result": answer})
            if gets < 2:
                return httpx.Response(200, json={"status": "running", "progress": {"done": 1, "total": 2}})
            return httpx.Response(200, json={"status": "done", "result": answer} if mode == "status_url"
                                  else {"status": "completed", **answer})
        return httpx.Client(base_url="http://fake", transport=httpx.MockTransport(handle))

    try:
        consolidate(server("404"), "ns", None, timeout=5)
        check("404: RouteMissing", False)
    except RouteMissing as exc:
        check("404: RouteMissing naming the route", "/api/v1/namespaces/ns/consolidate" in str(exc))
    seen.clear()
    got, meta = consolidate(server("direct"), "ns", None, timeout=5)
    check("200: the answer as is; body {dry_run: true} without a threshold",
          got == answer and meta["polls"] == 0 and seen[0][2] == {"dry_run": True})
    seen.clear()
    got, meta = consolidate(server("run"), "ns", None, timeout=5, poll_every=0, dry_run=False)
    check("applied: body {dry_run: false}, the job polled to the end",
          seen[0][2] == {"dry_run": False} and meta["polls"] == 2 and got["proposals"] == answer["proposals"])
    applied_answer = {**answer, "dry_run": False, "threshold": 0.9, "merged": 1, "superseded": 1,
                      "stale": 0, "conflicts_linked": 0}
    fake = httpx.Client(base_url="http://fake", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=applied_answer if json.loads(request.content)["dry_run"]
                                       is False else answer)))
    two = Corpus(seed=0, memories=[{"content": "a"}, {"content": "b"}], facts=[maria, maria], groups=[[0, 1]],
                 group_of=[0, 0], difficulty=["base", "surface"], role=["group"] * 2, hard_negatives=[])
    got = apply_call(fake, argparse.Namespace(timeout=5), two, ["m0", "m1"], os.getpid())
    check("apply_call: counts, the threshold used, timings, the proposals scored",
          got["counts"] == {"merged": 1, "superseded": 1, "stale": 0, "conflicts_linked": 0}
          and got["threshold_used"] == 0.9 and got["request"] == {"dry_run": False}
          and got["wall_s"] >= 0 and got["server_cpu_s"] >= 0 and len(got["loadavg_after"]) == 3
          and got["applied_proposals"] == 1 and got["metrics"]["precision"] == 1.0, got["counts"])
    try:
        apply_call(httpx.Client(base_url="http://fake", transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={**answer, "dry_run": True}))),
            argparse.Namespace(timeout=5), two, ["m0", "m1"], os.getpid())
        check("apply_call: an answer still a dry run raises", False)
    except RuntimeError as exc:
        check("apply_call: an answer still a dry run raises", "not applied" in str(exc))
    for mode, path in (("status_url", "/api/v1/consolidations/c1"), ("job", "/api/v1/consolidations/j7"),
                       ("run", "/api/v1/consolidations/r3"), ("location", "/api/v1/consolidations/r4")):
        seen.clear()
        got, meta = consolidate(server(mode), "ns", 0.9, timeout=5, poll_every=0)
        check(f"202 + {mode}: polled to the end",
              got["proposals"] == answer["proposals"] and meta["polls"] == 2
              and seen[0][2] == {"dry_run": True, "threshold": 0.9} and seen[-1][1] == path, meta)
    try:
        consolidate(server("failed"), "ns", None, timeout=5, poll_every=0)
        check("failed job raises", False)
    except RuntimeError as exc:
        check("failed job raises", "failed" in str(exc))
    # 5. the tuning rule, targets, the report and chart
    def run(threshold: float | None, p: float, r: float, merged: int) -> dict[str, Any]:
        metrics = score(hand, [f"id{i}" for i in range(10)], [], []) | {
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r), "hard_negatives_merged": merged,
            "groups_exact_rate": r}
        return {"threshold_requested": threshold, "threshold_used": threshold or 0.9, "wall_s": 1.0,
                "server_cpu_s": 1.0, "metrics": metrics}

    runs = [run(None, 0.97, 0.82, 0), run(0.85, 0.90, 0.95, 3), run(0.88, 0.96, 0.86, 0),
            run(0.92, 0.99, 0.7, 0)]
    check("tuning rule: highest recall with P >= 0.95 and no negative merged",
          choose(runs)["threshold"] == 0.88)
    check("targets at the default threshold",
          all(t["result"] == "pass" for t in targets(runs, 10_000).values())
          and targets([run(None, 0.97, 0.82, 1)], 10_000)["no_hard_negative_merged"]["result"]
          == "fail")
    applied = {**run(None, 0.97, 0.82, 0), "wall_s": 601.0, "applied_proposals": 3, "loadavg_before":
               [1.0, 1.0, 1.0], "loadavg_after": [2.0, 1.5, 1.0],
               "counts": {"merged": 3, "superseded": 5, "stale": 0, "conflicts_linked": 2}}
    big = targets(runs, 100_000, applied)
    check("--apply at 100,000: applied_seconds_le_600 judged (601 s fails), none below 100,000",
          big["applied_seconds_le_600"] == {"value": 601.0, "limit": "<= 600.0", "result": "fail"}
          and big["consolidate_100k_le_600s"]["result"] == "pass"
          and "applied_seconds_le_600" not in targets(runs, 10_000, applied))
    with tempfile.TemporaryDirectory() as tmp:
        report = {"runs": runs, "corpus": a.stats(), "ingest": {"wall_s": 3.0}, "applied": applied,
                  "parameters": {"n": 100_000, "part": "tuning", "seed": 7, "embedder": "hash"},
                  "timestamp": datetime.now(UTC).isoformat()}
        json.dumps(report, allow_nan=False)
        chart(report, Path(tmp) / "c.png")
        check("chart drawn (with the applied call)", (Path(tmp) / "c.png").stat().st_size > 10_000)
        report["applied"] = None
        chart(report, Path(tmp) / "d.png")
        check("chart drawn without --apply", (Path(tmp) / "d.png").stat().st_size > 10_000)
        summary({**report, "applied": applied, "targets": big,
                 "ingest": {"wall_s": 3.0, "memories": 10, "per_s": 3.3, "near_duplicate_links_at_ingest": {},
                            "by_tenth": [{"stored": 5, "per_s": 4.0}, {"stored": 10, "per_s": 2.9}]}})
    print(f"\nself-test: {len(failures)} failed" + (f": {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


# --- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="memories in the corpus (10,000)")
    parser.add_argument("--groups", type=int, help="near-duplicate groups (500; below n=10,000: 5%% of n)")
    parser.add_argument("--hard-negatives", type=int,
                        help="hard-negative pairs (500; below n=10,000: 5%% of n)")
    parser.add_argument("--part", choices=tuple(SEEDS), default="reporting",
                        help="tuning (seed 2101: choose thresholds here) or reporting (seed 2102, default)")
    parser.add_argument("--seed", type=int, help="another seed (part recorded as 'custom')")
    parser.add_argument("--thresholds", type=lambda s: [float(x) for x in s.split(",") if x], default=[],
                        help="comma-separated thresholds to sweep after the default, e.g. 0.85,0.88,0.9")
    parser.add_argument("--embedder", choices=tuple(EMBEDDERS), default="minilm",
                        help="minilm (the server's default model) or hash (bench/hash_embedder.py: no "
                             "synonyms, for timing only)")
    parser.add_argument("--batch", type=int, default=500, help="memories per batch request, max 1000 (500)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds one consolidate call (or its job) may take (3600)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server, repeatable")
    parser.add_argument("--output", type=Path, help="the JSON, PNG beside it (default "
                        "bench/results/consolidation.json; consolidation_tuning.json for --part tuning)")
    parser.add_argument("--dump-corpus", type=Path, help="also write the corpus and its truth as JSON lines")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data directory")
    parser.add_argument("--reuse-data", type=Path, metavar="DIR",
                        help="a data dir an earlier run kept (same --n, --part/--seed, --embedder): no "
                             "ingest, only the consolidate calls (100,000 with MiniLM take half an hour to "
                             "ingest); the dir is left as it is")
    parser.add_argument("--apply", action="store_true",
                        help="after the dry run(s), one applied consolidation ({dry_run: false}, the "
                             "default threshold): its time and counts (changes the data dir)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    parser.add_argument("--self-test", action="store_true",
                        help="no server: check the generator, the scoring, the API client and the chart")
    args = parser.parse_args(argv)
    scaled = max(1, round(args.n * 0.05)) if args.n < 10_000 else 500
    args.groups = scaled if args.groups is None else args.groups
    args.hard_negatives = scaled if args.hard_negatives is None else args.hard_negatives
    args.seed_value = args.seed if args.seed is not None else SEEDS[args.part]
    args.part_label = "custom" if args.seed is not None else args.part
    if args.output is None:
        tuning = args.part_label == "tuning"
        args.output = RESULTS / ("consolidation_tuning.json" if tuning else "consolidation.json")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be between 1 and 1000")
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks still run
    print(f"generating {args.n:,} memories (seed {args.seed_value}) ...", flush=True)
    corpus = generate(args.n, args.seed_value, args.groups, args.hard_negatives)
    if args.dump_corpus:
        args.dump_corpus.write_text("".join(json.dumps(row) + "\n" for row in truth_rows(corpus)))
    data_dir = args.reuse_data or Path(tempfile.mkdtemp(prefix="mw-bench-consolidation-"))
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(data_dir), "MEMORYWEB_EMBEDDER": EMBEDDERS[args.embedder],
           "MEMORYWEB_RATE_LIMIT": "", "MEMORYWEB_ROLLUPS_SCHEDULED": "false",
           # a REST call considers at most MEMORYWEB_CONSOLIDATE_MAX (20,000) memories: the whole corpus
           "MEMORYWEB_CONSOLIDATE_MAX": str(max(args.n, 20_000)),
           **dict(kv.split("=", 1) for kv in args.server_env)}
    load_before, started = os.getloadavg(), time.perf_counter()
    report: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "complete": False,
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before},
        "parameters": {"n": args.n, "groups": args.groups, "hard_negatives": args.hard_negatives,
                       "part": args.part_label, "seed": args.seed_value, "embedder": args.embedder,
                       "batch": args.batch, "thresholds": args.thresholds, "server_env": args.server_env,
                       "apply": args.apply,
                       "route": f"POST /api/v1/namespaces/{NAMESPACE}/consolidate {{dry_run: true}}"
                                + (", then {dry_run: false}" if args.apply else "")},
        "corpus": {**corpus.stats(), "sha256": hashlib.sha256(
            "\n".join(m["content"] for m in corpus.memories).encode()).hexdigest()[:16]},
        "notes": ["Protocol and fields: bench/consolidation.py's docstring and bench/README.md.",
                  "precision/recall: pairwise over proposal members; a pair is correct iff both are in one "
                  "injected group. hard_negatives_merged counts a pair if any memory stating either fact "
                  "shares a proposal with one stating the other.",
                  "The server runs with MEMORYWEB_CONSOLIDATE_MAX = max(n, 20,000), so one REST call "
                  "considers the whole corpus (--server-env overrides)."],
        "code": {str(f.relative_to(REPO)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
                 for f in sorted((REPO / "apps/lifecycle").rglob("*.py")) if "migrations" not in f.parts},
        "ingest": None, "runs": [], "applied": None, "targets": {},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def save(runs: list[dict[str, Any]]) -> None:
        report["runs"], report["targets"] = runs, targets(runs, args.n, report["applied"])
        report["duration_s"] = time.perf_counter() - started
        args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")

    proc = None
    try:
        manage(env, "migrate", "-v0")
        if args.reuse_data:
            ids = stored_ids(env, corpus)
            report["ingest"] = {"reused_data_dir": str(data_dir), "memories": len(ids), "wall_s": 0.0}
            report["notes"].append("--reuse-data: no ingest; the memories of an earlier run's data dir.")
        else:
            manage(env, "create_namespace", NAMESPACE)
        key = manage(env, "create_api_key", "--namespace", NAMESPACE, "--role", "admin",
                     "--agent-id", AGENT).splitlines()[-1].strip()
        port = free_port()
        proc = start_server(env, port, data_dir / "daphne.log")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=args.timeout, trust_env=False,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            if not args.reuse_data:
                ids, report["ingest"] = ingest(client, corpus, args.batch, proc.pid)
            report["ingest"]["outbox_backlog_after"] = wait_indexed(f"http://127.0.0.1:{port}")
            save([])
            try:
                runs = run_calls(client, args, corpus, ids, proc.pid, save)
                if args.apply:
                    report["applied"] = apply_call(client, args, corpus, ids, proc.pid)
                    save(runs)
            except RouteMissing as exc:
                report["error"] = str(exc)
                save(report["runs"])
                print(f"\nFAILED: {exc}\nIngest worked: {report['ingest']['memories']:,} memories in "
                      f"{report['ingest']['wall_s']:.1f} s. Partial JSON: {args.output}", file=sys.stderr)
                return 2
    finally:
        if proc is not None:
            stop_server(proc)
        if args.keep_data or args.reuse_data:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    report["complete"] = True
    report["machine"]["loadavg_after"] = os.getloadavg()
    if args.part_label == "tuning" and runs:
        report["selection"] = choose(runs)
    save(runs)
    png = args.output.with_suffix(".png")
    chart(report, png)
    summary(report)
    print(f"wrote {args.output} and {png}")
    return 1 if args.check and any(t["result"] == "fail" for t in report["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
