"""Bulk re-tag as the dashboard runs it: 1,000 memories as a background job, with the
progress a person watches, and no re-embedding (issue 17, item 7).

In a fresh embedded data directory (its own process) it stores ``--n`` memories
(default 1,000) with the real embedder, starts huey's consumer in that process as the
embedded server does (apps/ops/worker.py), and starts the job the way the dashboard's
"Re-tag selected memories" does above MEMORYWEB_DASHBOARD_BULK_INLINE_MAX
(``bulk_jobs.start``: a BulkJob row, queued for huey on commit). While the worker runs it
in batches of MEMORYWEB_DASHBOARD_BULK_BATCH, the bench reads the job's row every 50 ms,
as the progress page's status endpoint does, and records the samples. It counts the
embedder's calls and texts from the start of the job to its end, and checks that every
memory was re-tagged exactly once (version 2, one audit entry each).

``--before REF`` also runs the pre-change path (``services.update`` per memory, which
re-embedded each one) in a ``git worktree`` of REF, for comparison: the default ref is
the commit before "A tags-only edit does not re-embed".

Writes bench/results/bulk_retag.json.

    .venv/bin/python bench/bulk_retag.py                   # the job, 1,000 memories (~1 min)
    .venv/bin/python bench/bulk_retag.py --n 200           # a quick run
    .venv/bin/python bench/bulk_retag.py --before ff5f94c^ # and the old per-memory path
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
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OLD_PATH_REF = "ff5f94c^"  # the commit before "A tags-only edit does not re-embed"

STORE = """
import json, time
from apps.memories import services
from apps.memories.embeddings import get_embedder
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.core.roles import Role
from bench.corpus import generate_memories

ns = Namespace.objects.get(slug="retag")
agent = Principal(label="key:bench", agent_id="bench", role=Role.AGENT, namespace_id=ns.pk,
                  namespace=ns)
items = [{{"content": m["content"] + f" #{{i}}", "tags": ["inbox"]}}
         for i, m in enumerate(generate_memories({n}))]
ids = []
for start in range(0, len(items), 250):
    ids += [r.memory.pk for r in services.ingest_many(agent, items[start:start + 250])]
embedder, texts, calls = get_embedder(), [], []
real = embedder.embed
embedder.embed = lambda batch: calls.append(1) or texts.append(len(batch)) or real(batch)
"""

#: After STORE: the dashboard's job, run by huey's consumer in this process.
JOB = STORE + """
from django.conf import settings
from django.contrib.auth import get_user_model
from apps.audit.models import AuditEntry
from apps.memories import bulk_jobs
from apps.memories.bulk_models import BulkJob
from apps.memories.models import Memory
from apps.ops.worker import start_in_process

person = get_user_model().objects.create_superuser("bench", "bench@example.org", "pw")
consumer = start_in_process()
started = time.perf_counter()
job = bulk_jobs.start(person, "retag", {{"add": ["reviewed"], "remove": ["inbox"]}},
                      sorted(str(pk) for pk in ids), [ns.pk], len(ids))
samples, first_running = [], None
while True:
    row = BulkJob.objects.values("state", "done", "batches").get(pk=job.pk)
    at = time.perf_counter() - started
    if row["state"] == "running" and first_running is None:
        first_running = at
    if not samples or (row["done"], row["state"]) != (samples[-1][1], samples[-1][2]):
        samples.append([round(at, 3), row["done"], row["state"]])
    if row["state"] not in ("queued", "running"):
        break
    time.sleep(0.05)
seconds = time.perf_counter() - started
job.refresh_from_db()
consumer.stop(graceful=True)
versions = sorted(set(Memory.objects.filter(pk__in=ids).values_list("version", flat=True)))
print(json.dumps({{
    "path": "dashboard job (bulk_jobs.start -> huey -> services.retag_many per batch)",
    "state": job.state, "retagged": job.changed, "batches": job.batches,
    "batch_size": settings.MEMORYWEB_DASHBOARD_BULK_BATCH,
    "seconds_from_start_to_done": round(seconds, 3),
    "seconds_queued": round(first_running or 0.0, 3),
    "seconds_running": round(seconds - (first_running or 0.0), 3),
    "embed_calls": len(calls), "texts_embedded": sum(texts),
    "versions_after": versions,
    "audit_entries": AuditEntry.objects.filter(operation="memory.update").count(),
    "tags_after": sorted({{tuple(t) for t in Memory.objects.values_list("tags", flat=True)}}),
    "progress_samples": samples,
}}))
"""

#: After STORE in the old tree: its admin action called update() once per memory.
OLD_PATH = STORE + """
admin = Principal(label="user:bench", agent_id="user:bench", role=Role.SYSTEM)
started = time.perf_counter()
for pk in ids:
    services.update(admin, pk, {{"tags": ["reviewed"]}})
print(json.dumps({{"path": "services.update per memory", "seconds": time.perf_counter() - started,
                  "retagged": len(ids), "embed_calls": len(calls), "texts_embedded": sum(texts)}}))
"""


def run(tree: Path, snippet: str, n: int) -> dict:
    """Fresh data directory, migrate, one namespace, then the snippet; its JSON line."""
    data = Path(tempfile.mkdtemp(prefix="mw-retag-"))
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(data), "MEMORYWEB_CONTROL_SOCKET": ""}
    for name in ("DATABASE_URL", "CHROMA_URL", "REDIS_URL"):
        env.pop(name, None)
    try:
        for args in (["migrate", "-v0"], ["create_namespace", "retag"],
                     ["shell", "-c", snippet.format(n=n)]):
            proc = subprocess.run([sys.executable, "manage.py", *args], cwd=tree, env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{tree}: manage.py {args[0]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(data, ignore_errors=True)


def old_path(ref: str, n: int) -> dict:
    worktree = Path(tempfile.mkdtemp(prefix="mw-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), ref],
                   cwd=REPO, check=True)
    try:
        return run(worktree, OLD_PATH, n)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="memories to re-tag")
    parser.add_argument("--before", nargs="?", const=OLD_PATH_REF, default=None,
                        help=f"also run the old per-memory path at this ref ({OLD_PATH_REF})")
    args = parser.parse_args(argv)
    job = run(REPO, JOB, args.n)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "n": args.n, "job": job,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "loadavg_1m": os.getloadavg()[0]}}
    if args.before:
        report["before_ref"], report["before"] = args.before, old_path(args.before, args.n)
    out = REPO / "bench" / "results" / "bulk_retag.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    samples = job["progress_samples"]
    middle = [s for s in samples if 0 < s[1] < args.n]
    print(f"re-tag {args.n} memories as a job: {job['state']} in "
          f"{job['seconds_from_start_to_done']:.2f} s ({job['seconds_queued']:.2f} s queued, "
          f"{job['seconds_running']:.2f} s running, {job['batches']} batches of "
          f"{job['batch_size']}); {len(samples)} progress samples, {len(middle)} part-way; "
          f"{job['embed_calls']} embedder calls; versions after {job['versions_after']}.")
    if args.before:
        print(f"old per-memory path at {args.before}: {report['before']['seconds']:.2f} s, "
              f"{report['before']['embed_calls']} embedder calls.")
    print(f"Wrote {out.relative_to(REPO)}")
    return 0 if job["state"] == "done" and job["embed_calls"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
