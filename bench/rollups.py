#!/usr/bin/env python
"""Rollup build time: a day of 10,000 events, a month of 100,000, one changed day, no change.

In-process, on a fresh temp data directory (Django set up as bench/locomo.py does). Events
are stored through the events service (``store_events``, 1,000 per call: validation,
redaction, the write path with its keyword index, vectors, audit), so the rows are what
capture writes; timelines are built with ``apps.timeline.services.build`` (what
``manage.py rollup`` and the scheduled job call), with the default offline extractive
summarizer. Three measurements:

1. **day**: one namespace, ``--day-events`` (10,000) events on one day, several Claude
   Code-like sessions (prompts, tool calls and results, answers: people, projects,
   numbers, dates from bench/corpus.py's vocabulary; seed 42). Full build: segments,
   day, week, month, year. Target (issue 20): under 60 s.
2. **month**: another namespace, ``--days`` (30) x ``--per-day`` (3,334) events. Full
   build; then one day (``--change-day``) changes through the services (``--change-add``
   new events in a new session, ``--change-edit`` events edited by a team admin) and the
   timeline is built again: every node's ``revision`` before and after shows what was
   rebuilt, which must be that day's nodes and its week, month and year only.
3. **no change**: the month built again with nothing changed.

The floor is the summarizer alone: every ``summarize`` call a build made, recorded and
replayed on a fresh extractive summarizer in this process (no database, no write path),
so build / floor is what the build adds around summarising. For the day, also one call
over all the day's texts at the day's length (what one extractive pass over the raw day
costs). Per level: the time in the node writes (summarize + write path) and in the
summarizer; per phase: listing inputs, days (segments + day nodes), weeks, months, years,
linking; nodes built, RSS.

Vectors: rollups do not read them, so the events are embedded with the hash embedder
(bench/hash_embedder.py) to load 100,000 events in minutes; the build embeds each summary
memory it writes with the same embedder. ``minilm_estimate`` times MiniLM (the default
model) on the summaries the build wrote, one at a time as the build embeds them: what the
default embedder would add to each build. ``--profile`` adds a cProfile of a rebuild of
the day (top entries by cumulative time). Writes bench/results/rollups.json and .png.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

try:
    from bench.locomo import setup_django
    from bench.rollups_data import day_events
    from bench.rollups_report import LEVELS, chart, print_summary, targets
except ImportError:  # run as a script, bench/ is sys.path[0]
    from locomo import setup_django
    from rollups_data import day_events
    from rollups_report import LEVELS, chart, print_summary, targets

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
UTC = dt.UTC
HASH_EMBEDDER = "bench.hash_embedder.HashEmbedder"
STORE_BATCH = 1000  # MEMORYWEB_MAX_BATCH's default


# --- measuring a build ---------------------------------------------------------------------

def rss_mb() -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}


class Recorder:
    """The summarizer the build gets: the real extractive one, timed per level, its
    inputs kept (``record``) for the floor's replay."""

    def __init__(self, record: bool):
        from apps.core.summarizer_extractive import ExtractiveSummarizer

        self.inner = ExtractiveSummarizer()
        self.name = self.inner.name
        self.record, self.level = record, "?"
        self.calls: list[tuple[str, list[Any], int]] = []
        self.seconds: dict[str, float] = defaultdict(float)

    def summarize(self, sources, *, max_chars: int, focus: str = ""):
        start = time.perf_counter()
        try:
            return self.inner.summarize(sources, max_chars=max_chars, focus=focus)
        finally:
            self.seconds[self.level] += time.perf_counter() - start
            if self.record:
                self.calls.append((self.level, list(sources), max_chars))


@contextmanager
def instrumented(recorder: Recorder):
    """Time the build's phases and node writes per level by wrapping Builder's methods
    (the timeline's code runs unchanged); yields the timings dict."""
    from apps.timeline.build import Builder

    timings: dict[str, Any] = {"phases": defaultdict(float), "write_s": defaultdict(float),
                               "writes": defaultdict(int)}
    originals = {name: getattr(Builder, name) for name in ("_inputs", "_day", "_upper", "_link", "_write")}

    def timed(name: str, key: Callable[..., str]):
        original = originals[name]

        def wrapper(self, *args, **kwargs):
            label = key(*args)
            if name == "_write":
                recorder.level = str(args[0])
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                if name == "_write":
                    timings["write_s"][label] += elapsed
                    timings["writes"][label] += 1
                else:
                    timings["phases"][label] += elapsed
        return wrapper

    Builder._inputs = timed("_inputs", lambda *a: "list_inputs")
    Builder._day = timed("_day", lambda *a: "days (segments + day nodes)")
    Builder._upper = timed("_upper", lambda level, *a: f"{level}s")
    Builder._link = timed("_link", lambda *a: "link parents")
    Builder._write = timed("_write", lambda level, *a: str(level))
    try:
        yield timings
    finally:
        for name, original in originals.items():
            setattr(Builder, name, original)


def measured_build(namespace, label: str, *, record: bool = False, rebuild: bool = False) -> dict[str, Any]:
    """One build, timed and instrumented; its report, per-level times, RSS."""
    from apps.timeline.services import build

    recorder = Recorder(record)
    cpu0 = time.process_time()
    with instrumented(recorder) as timings, tqdm(total=0, desc=label, unit="day", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        start = time.perf_counter()
        report = build(namespace, rebuild=rebuild, progress=progress, summarizer=recorder)
        wall = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(f"{label}: the build did not finish cleanly: {report.as_dict()}")
    result = {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "report": report.as_dict(),
              "nodes_built": sum(report.built.values()),
              "phases_s": dict(timings["phases"]),
              "per_level": {level: {"nodes": timings["writes"].get(level, 0),
                                    "write_s": timings["write_s"].get(level, 0.0),
                                    "summarize_s": recorder.seconds.get(level, 0.0)}
                            for level in LEVELS},
              "summarize_s": sum(recorder.seconds.values()), "rss": rss_mb(), "loadavg": os.getloadavg()}
    return result | ({"_calls": recorder.calls} if record else {})


def floor(calls: list[tuple[str, list[Any], int]]) -> dict[str, Any]:
    """The summarizer alone: the build's calls replayed on a fresh extractive summarizer."""
    from apps.core.summarizer_extractive import ExtractiveSummarizer

    summarizer = ExtractiveSummarizer()
    per_level: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    for level, sources, max_chars in calls:
        t0 = time.perf_counter()
        summarizer.summarize(sources, max_chars=max_chars)
        per_level[level] += time.perf_counter() - t0
    return {"wall_s": time.perf_counter() - start, "calls": len(calls), "per_level_s": dict(per_level)}


def snapshot(namespace) -> dict[str, tuple]:
    """Every node: (level, start, session, revision, summary's SHA-256, source_count)."""
    from apps.timeline.models import RollupNode

    rows = RollupNode.objects.filter(namespace=namespace).values_list(
        "pk", "level", "start", "session_id", "revision", "summary", "source_count")
    return {str(pk): (level, start, session, revision, hashlib.sha256(summary.encode()).hexdigest(), count)
            for pk, level, start, session, revision, summary, count in rows}


def rebuilt_nodes(before: dict[str, tuple], after: dict[str, tuple], day: dt.date) -> dict[str, Any]:
    """Which nodes a build wrote (revision changed, or new) or removed, and whether they are
    all the changed day's (segments, the day) or its ancestors (its week, month, year)."""
    from apps.timeline import periods

    allowed = {"day": {periods.start_of("day", day)}, "week": {periods.start_of("week", day)},
               "month": {periods.start_of("month", day)}, "year": {periods.start_of("year", day)}}
    written = {pk: node for pk, node in after.items() if pk not in before or before[pk][3] != node[3]}
    removed = {pk: node for pk, node in before.items() if pk not in after}
    levels = {level: {"that_day_or_ancestor": 0, "elsewhere": 0} for level in LEVELS}
    elsewhere = []
    for level, start, session, *_ in [*written.values(), *removed.values()]:
        ours = start.date() == day if level == "segment" else start in allowed[level]
        levels[level]["that_day_or_ancestor" if ours else "elsewhere"] += 1
        if not ours:
            elsewhere.append({"level": level, "start": start.isoformat(), "session_id": session})
    segments_that_day = sum(1 for level, start, *_ in after.values()
                            if level == "segment" and start.date() == day)
    def node(state: dict[str, tuple], level: str) -> tuple | None:
        return next((n for n in state.values() if n[0] == level and n[1] in allowed[level]), None)

    summaries = {level: {"rewritten": bool(node(after, level) and node(before, level)
                                           and node(after, level)[3] != node(before, level)[3]),
                         "summary_changed": bool(node(after, level) and node(before, level)
                                                 and node(after, level)[4] != node(before, level)[4]),
                         "source_count": [node(before, level)[5] if node(before, level) else None,
                                          node(after, level)[5] if node(after, level) else None]}
                 for level in ("day", "week", "month", "year")}
    return {"changed_day": day.isoformat(), "nodes_before": len(before), "nodes_after": len(after),
            "that_day_and_ancestors": summaries,
            "written": len(written), "created": sum(1 for pk in written if pk not in before),
            "removed": len(removed), "unchanged": sum(1 for pk in after if pk not in written),
            "by_level": levels, "segments_of_that_day": segments_that_day,
            "written_elsewhere": elsewhere[:50],
            "only_that_day_and_ancestors": not elsewhere and levels["day"]["that_day_or_ancestor"] >= 1}


# --- loading -------------------------------------------------------------------------------

def principals(namespace):
    from apps.core.roles import Role
    from apps.tenancy.principal import Principal

    agent = Principal(label="bench:rollups", agent_id="claude-laptop", role=Role.AGENT,
                      namespace_id=namespace.pk, namespace=namespace)
    admin = Principal(label="bench:admin", agent_id="team-admin", role=Role.ADMIN,
                      namespace_id=namespace.pk, namespace=namespace)
    return agent, admin


def load(namespace, events: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Store events through the events service, STORE_BATCH per call."""
    from apps.memories.services import store_events

    agent, _ = principals(namespace)
    start = time.perf_counter()
    with tqdm(total=len(events), desc=label, unit="event") as bar:
        for i in range(0, len(events), STORE_BATCH):
            chunk = events[i:i + STORE_BATCH]
            stored = store_events(agent, chunk)
            if sum(r.created for r in stored) != len(chunk):
                raise RuntimeError(f"{label}: stored {sum(r.created for r in stored)} of {len(chunk)}")
            bar.update(len(chunk))
    wall = time.perf_counter() - start
    return {"events": len(events), "wall_s": wall, "events_per_s": len(events) / wall}


def change_day(namespace, day: dt.date, add: int, edit: int, seed: int) -> dict[str, Any]:
    """A late session of ``add`` new events that day, and ``edit`` of its events edited by
    a team admin: the sources of the day summary's first grips, their quoted sentence
    corrected (so the day's summary changes and its week, month and year have something
    to rebuild); through the services, as the API does it."""
    from apps.memories import services
    from apps.memories.models import Memory
    from apps.timeline import periods
    from apps.timeline.models import Grip

    agent, admin = principals(namespace)
    rng = random.Random(seed)
    late = day_events(day, add, rng, "late")
    evening = dt.datetime.combine(day, dt.time(22), UTC)
    for i, e in enumerate(late):  # one session in the evening, after the day's others
        e["session_id"] = f"late-{day:%Y%m%d}"
        e["occurred_at"] = (evening + dt.timedelta(seconds=30 * i)).isoformat()
    start = time.perf_counter()
    services.store_events(agent, late)
    gripped = {}
    for grip in Grip.objects.filter(node__namespace=namespace, node__level="day",
                                    node__start=periods.start_of("day", day)).order_by("position"):
        gripped.setdefault(grip.memory_id, grip.excerpt)
    edited = []
    for memory_id, excerpt in list(gripped.items())[:edit]:
        memory = Memory.objects.get(pk=memory_id)
        fixed = excerpt.rstrip(".") + " (corrected on review: 120 hours)."
        services.update(admin, memory.pk, {"content": memory.content.replace(excerpt, fixed, 1)})
        edited.append({"memory": str(memory.pk), "excerpt": excerpt[:120]})
    return {"day": day.isoformat(), "added": len(late), "edited": len(edited), "edits": edited,
            "wall_s": time.perf_counter() - start}


def one_call_over_day(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The summarizer once over every text of the day, at the day's length."""
    from apps.core.summarizer import SourceText
    from apps.core.summarizer_extractive import ExtractiveSummarizer
    from apps.timeline import conf

    sources = [SourceText(e["id"], e["text"], dt.datetime.fromisoformat(e["occurred_at"]))
               for e in events if e.get("text")]
    start = time.perf_counter()
    ExtractiveSummarizer().summarize(sources, max_chars=conf.max_chars("day"))
    return {"sources": len(sources), "wall_s": time.perf_counter() - start}


def minilm_estimate(namespace) -> dict[str, Any]:
    """MiniLM (the default embedder) on the summary memories the builds wrote, one text per
    call as the build embeds them: what a build would add with the default model."""
    from apps.memories.embeddings import MiniLMOnnxEmbedder
    from apps.memories.models import Memory

    texts = list(Memory.objects.filter(namespace=namespace, kind="summary").values_list("content", flat=True))
    embedder = MiniLMOnnxEmbedder()
    embedder.embed(["load the model"])
    start = time.perf_counter()
    for text in texts:
        embedder.embed([text])
    wall = time.perf_counter() - start
    return {"summaries": len(texts), "wall_s": wall, "ms_per_summary": 1000 * wall / max(1, len(texts))}


def profile_rebuild(namespace, top: int = 25) -> dict[str, Any]:
    """cProfile of ``build(rebuild=True)`` (every node summarised and written again)."""
    from apps.timeline.services import build

    profiler = cProfile.Profile()
    profiler.enable()
    build(namespace, rebuild=True)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": calls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})
    rows.sort(key=lambda r: -r["cumtime_s"])
    # Vector-store and embedder calls, whatever their rank: how many each node write makes.
    picked = [r for r in rows if any(k in r["function"] for k in
                                     ("hash_embedder.py", "(upsert)", "(delete)", "unindex_inline",
                                      "index_inline", "drain_outbox", "summarize"))]
    return {"top": rows[:top], "vector_store_and_embedder": picked[:20]}


# --- the run -------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    from apps.tenancy.services import create_namespace

    results: dict[str, Any] = {"setup_rss": rss_mb()}
    rng = random.Random(42)
    # 1. a day of --day-events
    day = dt.date.fromisoformat(args.day)
    day_ns = create_namespace("rollup-day")
    events = day_events(day, args.day_events, rng, "d")
    results["day"] = {"date": day.isoformat(), "load": load(day_ns, events, "load day")}
    build_day = measured_build(day_ns, "build day", record=True)
    calls = build_day.pop("_calls")
    build_day["floor"] = floor(calls)
    build_day["floor"]["one_call_over_the_day"] = one_call_over_day(events)
    build_day["over_floor"] = build_day["wall_s"] / build_day["floor"]["wall_s"]
    results["day"]["build"] = build_day
    results["day"]["no_change"] = measured_build(day_ns, "no-change day")
    del calls, events
    # 2. a month of --days x --per-day
    first = dt.date.fromisoformat(args.month_start)
    month_ns = create_namespace("rollup-month")
    loads = []
    for i in tqdm(range(args.days), desc="load month (days)", unit="day"):
        loads.append(load(month_ns, day_events(first + dt.timedelta(days=i), args.per_day, rng, "m"),
                          f"day {i + 1}/{args.days}"))
    total = sum(x["events"] for x in loads)
    results["month"] = {"first_day": first.isoformat(), "days": args.days, "per_day": args.per_day,
                        "load": {"events": total, "wall_s": sum(x["wall_s"] for x in loads),
                                 "events_per_s": total / sum(x["wall_s"] for x in loads)}}
    full = measured_build(month_ns, "build month", record=True)
    full["floor"] = floor(full.pop("_calls"))
    full["over_floor"] = full["wall_s"] / full["floor"]["wall_s"]
    results["month"]["build"] = full
    # ... one day changes
    changed = first + dt.timedelta(days=min(args.change_day, args.days) - 1)
    before = snapshot(month_ns)
    results["month"]["change"] = change_day(month_ns, changed, args.change_add, args.change_edit, seed=7)
    incremental = measured_build(month_ns, "incremental month", record=True)
    incremental["floor"] = floor(incremental.pop("_calls"))
    incremental["over_floor"] = incremental["wall_s"] / max(incremental["floor"]["wall_s"], 1e-9)
    incremental["rebuilt"] = rebuilt_nodes(before, snapshot(month_ns), changed)
    incremental["over_full_build"] = incremental["wall_s"] / full["wall_s"]
    results["month"]["incremental"] = incremental
    # 3. nothing changed
    before = snapshot(month_ns)
    no_change = measured_build(month_ns, "no-change month")
    no_change["rebuilt"] = rebuilt_nodes(before, snapshot(month_ns), changed)
    no_change["over_full_build"] = no_change["wall_s"] / full["wall_s"]
    results["month"]["no_change"] = no_change
    if not args.no_minilm_estimate:
        estimate = minilm_estimate(month_ns)
        estimate["added_to_month_build_s"] = estimate["ms_per_summary"] / 1000 * full["nodes_built"]
        estimate["added_to_day_build_s"] = estimate["ms_per_summary"] / 1000 * build_day["nodes_built"]
        results["minilm_estimate"] = estimate
    if args.profile:
        results["day"]["profile_rebuild"] = profile_rebuild(day_ns)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day-events", type=int, default=10_000,
                        help="events in the one-day namespace (10,000)")
    parser.add_argument("--day", default="2026-05-12", help="that day (UTC; default 2026-05-12)")
    parser.add_argument("--days", type=int, default=30, help="days in the month namespace (30)")
    parser.add_argument("--per-day", type=int, default=3334,
                        help="events per day of the month (3,334: 100,020)")
    parser.add_argument("--month-start", default="2026-04-01", help="its first day (default 2026-04-01)")
    parser.add_argument("--change-day", type=int, default=15, help="which day of the month changes (15th)")
    parser.add_argument("--change-add", type=int, default=20, help="events added that day (20)")
    parser.add_argument("--change-edit", type=int, default=3, help="events of that day edited (3)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile a rebuild of the day (top 25 by cumulative time)")
    parser.add_argument("--no-minilm-estimate", action="store_true",
                        help="skip timing MiniLM on the summaries written")
    parser.add_argument("--output", type=Path, default=RESULTS / "rollups.json",
                        help="the JSON (PNG beside it; default bench/results/rollups.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data directory")
    args = parser.parse_args(argv)
    if min(args.day_events, args.days, args.per_day, args.change_add) < 1 or args.change_edit < 0:
        parser.error("sizes must be >= 1 (--change-edit >= 0)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a shared machine's cleanup) runs the finally blocks: server stopped, temp dir gone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data_dir = Path(tempfile.mkdtemp(prefix="mw-bench-rollups-"))
    os.environ.setdefault("MEMORYWEB_EMBEDDER", HASH_EMBEDDER)
    os.environ["MEMORYWEB_ROLLUPS_SCHEDULED"] = "false"
    load_before, started = os.getloadavg(), time.perf_counter()
    try:
        setup_django(data_dir)
        from django.conf import settings

        results = run(args)
        embedder = settings.MEMORYWEB_EMBEDDER
    finally:
        if args.keep_data:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    report = {
        "timestamp": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "parameters": {"day_events": args.day_events, "day": args.day, "days": args.days,
                       "per_day": args.per_day,
                       "month_start": args.month_start, "change_day": args.change_day,
                       "change_add": args.change_add, "change_edit": args.change_edit, "seed": 42,
                       "embedder": embedder, "summarizer": "extractive (default)",
                       "store_batch": STORE_BATCH},
        "duration_s": time.perf_counter() - started,
        "notes": [
            "Protocol: bench/rollups.py's docstring and bench/README.md.",
            f"Events embedded with {embedder}: rollups never read vectors; the build embeds each summary"
            " memory it writes with the same embedder (minilm_estimate: what MiniLM would add).",
            "floor: every summarize() call of the build replayed on a fresh extractive summarizer, no DB;"
            " over_floor = build wall / floor wall.",
            "per_level.write_s: Builder._write (summarize + write path: summary memory, grips, sources,"
            " audit, event); phases_s: list_inputs, days (segments + day nodes), weeks, months, years, link.",
            "rebuilt: nodes whose revision changed (or new, or removed) between two builds."],
        "code": {str(f.relative_to(REPO)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
                 for f in [*sorted((REPO / "apps/timeline").glob("*.py")),
                           REPO / "apps/core/summarizer_extractive.py", REPO / "apps/memories/writes.py",
                           REPO / "apps/memories/indexing.py"]},
        **results,
    }
    report["targets"] = targets(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    png = args.output.with_suffix(".png")
    chart(report, png)
    print_summary(report)
    print(f"wrote {args.output} and {png}")
    return 0 if all(t["result"] == "pass" for t in report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
