"""Bulk re-tag: what the dashboard's "Re-tag selected memories" costs, before and after
a tags-only change stopped re-embedding (issue 17, item 7).

The same snippet runs in two source trees, each in its own process and fresh data
directory: the tree as it is, and a ``git worktree`` of ``--before`` (default: the commit
before the change). It stores ``--n`` memories (default 1,000) with the real embedder,
then re-tags all of them the way the dashboard's action does in that tree: one
``services.update`` per memory before, one ``services.retag_many`` call after. It times
the re-tag only, and counts the embedder's calls and texts during it. Writes
bench/results/bulk_retag.json and prints the ratio.

    .venv/bin/python bench/bulk_retag.py            # 1,000 memories (a few minutes)
    .venv/bin/python bench/bulk_retag.py --n 200    # a quick run
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
BEFORE = "ff5f94c^"  # the commit before "A tags-only edit does not re-embed"

SNIPPET = """
import json, time
from apps.memories import services
from apps.memories.embeddings import get_embedder
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal
from apps.tenancy.roles import Role
from bench.corpus import generate_memories

ns = Namespace.objects.get(slug="retag")
agent = Principal(label="key:bench", agent_id="bench", role=Role.AGENT, namespace_id=ns.pk,
                  namespace=ns)
items = [{{"content": m["content"] + f" #{{i}}", "tags": ["inbox"]}}
         for i, m in enumerate(generate_memories({n}))]
ids = []
for start in range(0, len(items), 250):
    ids += [m.pk for m in services.ingest_many(agent, items[start:start + 250])]
admin = Principal(label="user:bench", agent_id="user:bench", role=Role.SYSTEM)
embedder, texts, calls = get_embedder(), [], []
real = embedder.embed
embedder.embed = lambda batch: calls.append(1) or texts.append(len(batch)) or real(batch)
started = time.perf_counter()
if hasattr(services, "retag_many"):  # after: one batched call, as the admin action makes
    done = len(services.retag_many(admin, ids, add=["reviewed"], remove=["inbox"]).updated)
    path = "services.retag_many"
else:  # before: the admin action called update() once per memory
    done = 0
    for pk in ids:
        services.update(admin, pk, {{"tags": ["reviewed"]}})
        done += 1
    path = "services.update per memory"
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "retagged": done, "embed_calls": len(calls),
                  "texts_embedded": sum(texts), "path": path}}))
"""


def run(tree: Path, n: int) -> dict:
    """Fresh data directory, migrate, one namespace, then the snippet; its JSON line."""
    data = Path(tempfile.mkdtemp(prefix="mw-retag-"))
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(data), "MEMORYWEB_CONTROL_SOCKET": ""}
    for name in ("DATABASE_URL", "CHROMA_URL", "REDIS_URL"):
        env.pop(name, None)
    try:
        for args in (["migrate", "-v0"], ["create_namespace", "retag"],
                     ["shell", "-c", SNIPPET.format(n=n)]):
            proc = subprocess.run([sys.executable, "manage.py", *args], cwd=tree, env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{tree}: manage.py {args[0]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="memories to re-tag")
    parser.add_argument("--before", default=BEFORE, help="git ref of the 'before' tree")
    args = parser.parse_args(argv)
    worktree = Path(tempfile.mkdtemp(prefix="mw-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), args.before],
                   cwd=REPO, check=True)
    try:
        before = run(worktree, args.n)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=True)
    after = run(REPO, args.n)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "n": args.n,
        "before_ref": args.before, "before": before, "after": after,
        "speedup": round(before["seconds"] / after["seconds"], 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m": os.getloadavg()[0]},
    }
    out = REPO / "bench" / "results" / "bulk_retag.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"re-tag {args.n} memories: before {before['seconds']:.2f} s "
          f"({before['embed_calls']} embedder calls, {before['texts_embedded']} texts), "
          f"after {after['seconds']:.2f} s ({after['embed_calls']} calls): "
          f"{report['speedup']}x faster. Wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
