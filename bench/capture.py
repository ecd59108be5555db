#!/usr/bin/env python
"""Capture throughput through the hook path, its wall time per hook, and the spool's replay.

A real Daphne on a fresh data directory takes conversation events five ways, each into a
namespace of its own (fresh, so every way writes into an index of the same size), from
the same synthetic Claude Code sessions (bench/corpus.py's vocabulary: people, projects,
tools, numbers, dates; prompts, tool calls with their output, answers read from a
transcript at Stop):

* ``hook``: one ``python3 memoryweb_capture --format claude-code`` process per hook
  payload, payload on stdin, the transcript growing on disk as the session goes: what a
  Claude Code agent runs (docs/capture.md's install snippet);
* ``jsonl_100`` / ``jsonl_1000``: the same events as JSON lines, 100 or 1,000 per
  ``--format jsonl`` process (``--batch-timeout``, 120 s: a bulk import; the budget probe
  below shows what the shipped 2 s does with a batch);
* ``direct_events`` (the floor): the same events POSTed by this process to
  ``/api/v1/events`` in batches of 100 (the client's batch size) on one keep-alive
  connection;
* ``direct_memories`` (a second reference): the same texts to
  ``/api/v1/memories/batch``, 100 per request.

The series take turns block by block (``--block`` events of whole sessions), the order
rotating per block, so load on the shared machine falls on all alike; ratios are against
``direct_events`` from the same run. Each hook invocation is timed from fork to exit,
beside ``python3 -c pass`` (the floor: the interpreter's start) and ``python3 -c "import
memoryweb_capture.cli"`` (start + the client's imports). Then an outage: the server is
stopped, ``--outage-events`` are captured by hooks (they spool: timed too), the server
restarts, and the replay is timed: the agent's next hook (its 2 s budget) then
``--flush`` until the spool is empty; no event may be lost or stored twice. The budget
probe: one ``--format jsonl`` invocation of 100 events with the shipped 2 s, and how long
the server takes to store them anyway.

``--embedder hash|minilm|both`` (default both): a server per embedder, one after the
other. Capture embeds every event, so ``minilm`` (the default model) is what a deployment
sees; ``hash`` (bench/hash_embedder.py) takes the model out to show the capture path's
own cost. Writes bench/results/capture.json and capture.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

try:
    from bench.recall_latency import cpu_seconds, free_port, manage, start_server, stop_server
except ImportError:  # run as a script, bench/ is sys.path[0]
    from recall_latency import cpu_seconds, free_port, manage, start_server, stop_server

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(REPO))
# the helpers import memoryweb_capture (stdlib only), on the repo's path
from bench.capture_client import Capture, Floors, import_profile  # noqa: E402
from bench.capture_data import claude_sessions, memory_of, prepared_events, write_transcript  # noqa: E402
from bench.capture_report import SERIES, chart, print_summary, stats_ms, summarise  # noqa: E402

EMBEDDERS = {"hash": "bench.hash_embedder.HashEmbedder", "minilm": "minilm-onnx"}
DIRECT_BATCH = 100  # memoryweb_capture.client.BATCH_SIZE: what the client sends per request
#: Events each Claude Code hook gives (ours: every Stop finds an answer in the transcript).
HOOK_EVENTS = {"SessionStart": 1, "UserPromptSubmit": 1, "PostToolUse": 2, "Stop": 2, "SessionEnd": 1}


# --- running things ----------------------------------------------------------------------

def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def code_digest() -> dict[str, str]:
    """SHA-256 (12 hex) of the capture client and the events service as measured: the tree
    is shared and changing, so a result names the code it measured."""
    import hashlib

    files = [*sorted((REPO / "memoryweb_capture").glob("*.py")), REPO / "apps/memories/services/events.py"]
    return {str(f.relative_to(REPO)): hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in files}


class Run:
    """One server (one embedder): namespaces and keys per series, the client identities."""

    def __init__(self, embedder: str, args: argparse.Namespace, work: Path):
        self.embedder, self.args, self.work = embedder, args, work
        self.data_dir = work / f"data-{embedder}"
        self.env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
                    "MEMORYWEB_DATA_DIR": str(self.data_dir), "MEMORYWEB_EMBEDDER": EMBEDDERS[embedder],
                    # no scheduled rollup build may run on the server while it is measured
                    "MEMORYWEB_ROLLUPS_SCHEDULED": "false"}
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keys: dict[str, str] = {}

    def setup(self) -> None:
        manage(self.env, "migrate", "-v0")
        admin = manage(self.env, "create_api_key", "--system-admin").splitlines()[-1].strip()
        self.start()
        with httpx.Client(base_url=self.url, timeout=60, trust_env=False,
                          headers={"Authorization": f"Bearer {admin}"}) as client:
            for name in (*SERIES, "outage", "probe", "warmup"):
                slug = f"cap-{name.replace('_', '-')}"
                client.post("/api/v1/namespaces", json={"slug": slug}).raise_for_status()
                response = client.post(f"/api/v1/namespaces/{slug}/keys",
                                       json={"role": "agent", "agent_id": "claude-laptop"})
                response.raise_for_status()
                self.keys[name] = response.json()["key"]
        self.client = httpx.Client(base_url=self.url, timeout=300, trust_env=False)

    def start(self) -> float:
        started = time.perf_counter()
        self.log = self.work / f"daphne-{self.embedder}-{int(time.time() * 1000)}.log"
        self.proc = start_server(self.env, self.port, self.log)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)
            self.proc = None

    def post(self, series: str, path: str, body: dict[str, Any]) -> None:
        response = self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.keys[series]}"})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the server's CPU to go idle, so work left over is not charged to the next turn."""
        assert self.proc is not None
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            before = cpu_seconds(self.proc.pid)
            time.sleep(0.1)
            if cpu_seconds(self.proc.pid) - before <= 0.011:
                return

    def stored(self, series: str) -> dict[str, int]:
        """Rows in the series' namespace: events (or memories), and distinct event ids."""
        slug = f"cap-{series.replace('_', '-')}"
        with closing(sqlite3.connect(f"file:{self.data_dir / 'memoryweb.sqlite3'}?mode=ro", uri=True)) as db:
            ns = db.execute("SELECT id FROM tenancy_namespace WHERE slug = ?", (slug,)).fetchone()[0]
            rows = db.execute("SELECT count(*) FROM memories_memory WHERE namespace_id = ?",
                              (ns,)).fetchone()[0]
            ids, distinct = db.execute(
                "SELECT count(*), count(DISTINCT external_id) FROM memories_externalid "
                "WHERE namespace_id = ? AND system = 'event'", (ns,)).fetchone()
        return {"rows": rows, "event_ids": ids, "distinct_event_ids": distinct}


def blocks_of(sessions: list[dict[str, Any]], block: int) -> list[list[dict[str, Any]]]:
    out, current, size = [], [], 0
    for session in sessions:
        current.append(session)
        size += session["events"]
        if size >= block:
            out.append(current)
            current, size = [], 0
    if current:
        out.append(current)
    return out


def run_hooks(capture: Capture, sessions: list[dict[str, Any]], floors: Floors | None,
              walls: list[dict[str, Any]], bar: tqdm) -> None:
    """Every hook of every session, one process each; ``walls`` gets each invocation's wall."""
    for session in sessions:
        transcript = capture.work / f"{session['id']}.jsonl"
        for payload, lines in session["steps"]:
            write_transcript(transcript, lines)  # the agent writes it; not timed
            body = json.dumps({**payload, "transcript_path": str(transcript)}).encode()
            wall = capture.run(["--format", "claude-code"], body)
            walls.append({"hook": payload["hook_event_name"], "wall_s": wall})
            if floors is not None:
                floors.sample("python_start")
                if len(walls) % 4 == 0:
                    floors.sample("python_start_import")
            bar.update(HOOK_EVENTS[payload["hook_event_name"]])


def turn(run: Run, series: str, sessions: list[dict[str, Any]], events: list[dict[str, Any]],
         ctx: dict[str, Any], bar: tqdm) -> dict[str, Any]:
    """One series' turn on one block; wall, server and client CPU, invocations."""
    assert run.proc is not None
    server_cpu, client_cpu, start = cpu_seconds(run.proc.pid), children_cpu(), time.perf_counter()
    row: dict[str, Any] = {"series": series, "events": len(events)}
    if series == "hook":
        run_hooks(ctx["captures"]["hook"], sessions, ctx["floors"], ctx["hook_walls"], bar)
    elif series.startswith("jsonl"):
        size, capture = int(series.split("_")[1]), ctx["captures"][series]
        for i in range(0, len(events), size):
            lines = "".join(json.dumps(e) + "\n" for e in events[i:i + size]).encode()
            ctx["jsonl_walls"][series].append(capture.run(["--format", "jsonl"], lines))
            ctx["jsonl_pending"][series].append(capture.pending())
            bar.update(len(events[i:i + size]))
    elif series == "direct_events":
        for i in range(0, len(events), DIRECT_BATCH):
            run.post(series, "/api/v1/events", {"events": events[i:i + DIRECT_BATCH]})
            bar.update(len(events[i:i + DIRECT_BATCH]))
    else:
        for i in range(0, len(events), DIRECT_BATCH):
            run.post(series, "/api/v1/memories/batch",
                     {"memories": [memory_of(e) for e in events[i:i + DIRECT_BATCH]]})
            bar.update(len(events[i:i + DIRECT_BATCH]))
    row["wall_s"] = time.perf_counter() - start
    row["server_cpu_s"] = cpu_seconds(run.proc.pid) - server_cpu
    row["client_cpu_s"] = children_cpu() - client_cpu  # the capture processes (0 for direct)
    run.settle()
    row["server_rss_mb"] = _rss(run.proc.pid)
    return row


def outage(run: Run, sessions: list[dict[str, Any]], python: str) -> dict[str, Any]:
    """Server down, hooks capture; server back, the next hook then --flush replay the spool."""
    capture = Capture(python, run.work / f"client-{run.embedder}-outage", run.url, run.keys["outage"],
                      run.args.capture_timeout)
    expected = sum(s["events"] for s in sessions)
    run.stop()
    walls: list[dict[str, Any]] = []
    with tqdm(total=expected, desc=f"{run.embedder}: hooks, server down", unit="event",
              leave=False) as bar:
        run_hooks(capture, sessions, None, walls, bar)
    spooled = capture.pending()
    restart_s = run.start()
    server_cpu = cpu_seconds(run.proc.pid)
    time.sleep(0.5)
    # The agent's next hook (a prompt in a new session) sends its event and what its budget allows.
    extra = claude_sessions(1, seed=99)[0]["steps"][:2]
    transcript = capture.work / "next.jsonl"
    first_wall = 0.0
    for payload, lines in extra:
        write_transcript(transcript, lines)
        first_wall += capture.run(["--format", "claude-code"],
                                  json.dumps({**payload, "transcript_path": str(transcript)}).encode())
    after_hook = capture.pending()
    flush_wall, flush_runs = capture.flush()
    run.settle()
    replay_cpu = cpu_seconds(run.proc.pid) - server_cpu
    replayed = spooled + 2  # the two hooks' own events (session_start, user_message)
    stored = run.stored("outage")
    once = stored["distinct_event_ids"]
    statuses: dict[str, int] = {}  # what the restarted server answered (Daphne's access log)
    for line in run.log.read_text(errors="replace").splitlines():
        if "/api/v1/events" in line:
            status = line.rsplit('"', 1)[-1].split()[0]
            statuses[status] = statuses.get(status, 0) + 1
    since = capture.log_lines(20)
    total = first_wall + flush_wall
    return {"events_spooled": spooled, "events_expected": expected, "events_replayed": replayed,
            "spool_only_hook_ms": stats_ms([w["wall_s"] for w in walls]),
            "server_restart_s": restart_s,
            "next_hooks": {"invocations": len(extra), "wall_s": first_wall, "sent": replayed - after_hook,
                           "left_in_spool": after_hook},
            "flush": {"invocations": flush_runs, "wall_s": flush_wall},
            "replay_wall_s": total, "replay_events_per_s": replayed / total if total else None,
            "replay_server_cpu_ms_per_event": 1000 * replay_cpu / replayed,
            "server_statuses_after_restart": statuses, "client_log_after_restart": since[:20],
            "stored": stored, "lost": replayed - once, "duplicates": stored["rows"] - once,
            "ok": spooled == expected and stored["rows"] == replayed == once}


def budget_probe(run: Run, events: list[dict[str, Any]], python: str) -> dict[str, Any]:
    """What the shipped budgets do with one batch of 100: a ``--format jsonl`` invocation
    with the default 2 s; then how long the server takes to store the batch anyway (a
    request the client abandons keeps running); then ``--flush`` (30 s) sends what is left."""
    assert run.proc is not None
    capture = Capture(python, run.work / f"client-{run.embedder}-probe", run.url, run.keys["probe"], None)
    lines = "".join(json.dumps(e) + "\n" for e in events).encode()
    hwm_before = _rss(run.proc.pid)
    first = capture.run(["--format", "jsonl"], lines)
    left = capture.pending()
    start, stored_after = time.perf_counter(), None
    while time.perf_counter() - start < 300:
        if run.stored("probe")["rows"] >= len(events):
            stored_after = first + time.perf_counter() - start
            break
        time.sleep(0.2)
    flush_wall, flush_runs = capture.flush()
    log = capture.log_lines(20)
    run.settle()
    return {"events": len(events), "first_invocation_s": first, "left_in_spool_after_first": left,
            "server_had_stored_all_after_s": stored_after, "flush_wall_s": flush_wall,
            "flush_invocations": flush_runs,
            "client_timeouts_logged": sum("timed out" in line for line in log), "client_log": log,
            "stored": run.stored("probe"), "server_rss_before_mb": hwm_before,
            "server_rss_after_mb": _rss(run.proc.pid)}


def bench_embedder(embedder: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    events = args.events if embedder == "hash" else args.minilm_events
    sessions = claude_sessions(events, seed=42)
    outage_sessions = claude_sessions(args.outage_events, seed=7)
    run = Run(embedder, args, work)
    run.setup()
    try:
        ctx: dict[str, Any] = {
            "captures": {s: Capture(args.python, work / f"client-{embedder}-{s}", run.url, run.keys[s],
                                    args.capture_timeout if s == "hook" else args.batch_timeout)
                         for s in SERIES if not s.startswith("direct")},
            "floors": Floors(args.python), "hook_walls": [],
            "jsonl_walls": {"jsonl_100": [], "jsonl_1000": []},
            "jsonl_pending": {"jsonl_100": [], "jsonl_1000": []}}
        scratch = work / f"prepare-{embedder}.jsonl"
        blocks = blocks_of(sessions, args.block)
        prepared = [[e for s in block for e in prepared_events(s, scratch)] for block in blocks]
        warm = prepared[0][:DIRECT_BATCH]  # loads the model and warms the write path; not timed
        run.post("warmup", "/api/v1/events", {"events": warm})
        rows = []
        total = sum(len(e) for e in prepared) * len(SERIES)
        with tqdm(total=total, desc=f"{embedder}: events x series", unit="event") as bar:
            for i, (block, events) in enumerate(zip(blocks, prepared, strict=True)):
                order = SERIES[i % len(SERIES):] + SERIES[:i % len(SERIES)]
                for series in order:
                    rows.append({"block": i, **turn(run, series, block, events, ctx, bar)})
        tails = {}
        for series in ("hook", "jsonl_100", "jsonl_1000"):  # what the budgets left in a spool
            left = ctx["captures"][series].pending()
            wall, runs = ctx["captures"][series].flush()
            tails[series] = {"left_in_spool": left, "flush_wall_s": wall, "flush_invocations": runs,
                             "client_log": ctx["captures"][series].log_lines()}
        run.settle()
        stored = {s: run.stored(s) for s in SERIES}
        result = summarise(rows, tails, stored, ctx, sum(len(e) for e in prepared))
        result["sessions"] = len(sessions)
        result["server_rss_mb"] = _rss(run.proc.pid) if run.proc else None
        result["budget_probe"] = budget_probe(run, prepared[0][:DIRECT_BATCH], args.python)
        out = result["outage"] = outage(run, outage_sessions, args.python)
        direct = result["series"]["direct_events"]
        out["replay_over_direct_events"] = (out["replay_events_per_s"] or 0) / direct["events_per_s"]
        # above 1: the server did more per event than for the floor (a batch re-sent while the
        # request the client abandoned still ran is embedded twice)
        out["replay_server_cpu_over_direct"] = (out["replay_server_cpu_ms_per_event"]
                                                / direct["server_cpu_ms_per_event"])
        return result
    finally:
        run.stop()
        if getattr(run, "client", None) is not None:
            run.client.close()


def _rss(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000,
                        help="events per series with the hash embedder (whole sessions, so a few more; "
                             "default 2000)")
    parser.add_argument("--minilm-events", type=int, default=1000,
                        help="events per series with MiniLM (default 1000: it embeds 5-15 of these events a "
                             "second on 2 cores)")
    parser.add_argument("--block", type=int, default=1000,
                        help="events per turn of a series (whole sessions; default 1000)")
    parser.add_argument("--outage-events", type=int, default=300,
                        help="events captured while the server is down (default 300)")
    parser.add_argument("--embedder", choices=("hash", "minilm", "both"), default="both",
                        help="the servers' embedder: both (default) runs one server each")
    default_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    parser.add_argument("--python", default=default_python,
                        help=f"the interpreter the hooks run with (default {default_python}: the "
                             "system python3, as in docs/capture.md)")
    parser.add_argument("--capture-timeout", type=float, default=None,
                        help="MEMORYWEB_CAPTURE_TIMEOUT for the hook and outage clients (default: unset, "
                             "the shipped 2 s)")
    parser.add_argument("--batch-timeout", type=float, default=120.0,
                        help="MEMORYWEB_CAPTURE_TIMEOUT for the jsonl series (default 120 s: a bulk "
                             "import; with 2 s a 100-event batch that takes longer never gets through, "
                             "see budget_probe)")
    parser.add_argument("--output", type=Path, default=RESULTS / "capture.json",
                        help="the JSON (the PNG goes beside it; default bench/results/capture.json)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dirs and logs")
    parser.add_argument("--replot", action="store_true",
                        help="run nothing: redraw the PNG beside --output from that JSON")
    args = parser.parse_args(argv)
    if min(args.events, args.minilm_events, args.block, args.outage_events) < 1:
        parser.error("--events, --minilm-events, --block and --outage-events must be >= 1")
    return args


def build_report(args: argparse.Namespace, embedders: tuple[str, ...], results: dict[str, Any],
                 load_before: tuple[float, ...], started: float) -> dict[str, Any]:
    """The JSON: machine, parameters, notes, the client's import profile, the code measured,
    one section per embedder finished (``complete`` false until all are)."""
    python_version = subprocess.run([args.python, "-c", "import platform; print(platform.python_version())"],
                                    capture_output=True, text=True).stdout.strip()
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": set(results) == set(embedders),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "hook_python": args.python,
                    "hook_python_version": python_version, "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "parameters": {"events": {"hash": args.events, "minilm": args.minilm_events}, "block": args.block,
                       "outage_events": args.outage_events, "embedders": list(embedders),
                       "hook_capture_timeout": args.capture_timeout or "2 (shipped default)",
                       "jsonl_capture_timeout": args.batch_timeout,
                       "direct_batch": DIRECT_BATCH, "seed": 42,
                       "server_env": {"MEMORYWEB_ROLLUPS_SCHEDULED": "false", "LOG_LEVEL": "WARNING"}},
        "duration_s": time.perf_counter() - started,
        "notes": [
            "Protocol: bench/capture.py's docstring and bench/README.md.",
            "events_per_s = events / wall of the series' turns (+ the final --flush of what a budget left);"
            " over_direct_events = that / direct_events' rate in the same run (the floor).",
            "hook_wall_ms: fork to exit of each hook process as the bench sees it; python_start ="
            " `python -c pass`, python_start_import = `python -c 'import memoryweb_capture.cli'`,"
            " sampled between hooks.",
            "hash embedder: the model taken out (bench/hash_embedder.py), to show the capture path's own"
            " cost; minilm: the default model, what a deployment embeds every event with.",
            "server_cpu_ms_per_event: Daphne's CPU; client_cpu_ms_per_event: the capture processes' CPU."],
        "hook_import_profile": import_profile(args.python),
        "code": code_digest(),
        "embedders": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        chart(json.loads(args.output.read_text()), args.output.with_suffix(".png"))
        return 0
    # SIGTERM (a shared machine's cleanup) runs the finally blocks: server stopped, temp dir gone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="mw-bench-capture-"))
    load_before, started = os.getloadavg(), time.perf_counter()
    embedders = ("hash", "minilm") if args.embedder == "both" else (args.embedder,)
    results: dict[str, Any] = {}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        for embedder in embedders:
            results[embedder] = bench_embedder(embedder, args, work)
            results[embedder]["loadavg_after"] = os.getloadavg()
            # written after each embedder: a run that dies later keeps what it measured
            report = build_report(args, embedders, results, load_before, started)
            args.output.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if args.keep_data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    png = args.output.with_suffix(".png")
    chart(report, png)
    print_summary(report)
    print(f"wrote {args.output} and {png}")
    ok = all(r["all_events_stored_once"] and r["outage"]["ok"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
