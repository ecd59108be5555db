"""Export memory use: does a streamed export's memory stay flat as the export grows?

For each size (default 5,000 / 20,000 / 50,000 memories) a namespace is filled straight
through the ORM (export reads SQL only, so no embedding is needed), a fresh Daphne
process is started, a one-memory export warms it up, and then the whole namespace is
exported over HTTP while the server's resident memory (VmRSS, /proc) is sampled every
10 ms. Writes bench/results/export_memory.json and export_memory.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_latency import REPO, free_port, manage, start_server, stop_server

NAMESPACE = "export-bench"
FILL = """
import uuid, random
from django.utils import timezone
from apps.memories.models import Memory, MemoryVersion, content_hash
from apps.tenancy.models import Namespace
from bench.corpus import generate_memories
ns = Namespace.objects.get(slug={namespace!r})
have = Memory.objects.filter(namespace=ns).count()
texts = generate_memories({target})[have:]
rng = random.Random(have)
for start in range(0, len(texts), 2000):
    rows = []
    for i, item in enumerate(texts[start:start + 2000]):
        content = item["content"] + f" #{{have + start + i}}"
        rows.append(Memory(id=uuid.uuid4(), namespace=ns, content=content, kind="fact",
                           tags=["bench", f"t{{rng.randint(0, 9)}}"],
                           metadata={{"subject_id": f"s{{rng.randint(0, 99)}}", "n": start + i}},
                           agent_id=f"agent-{{rng.randint(0, 4)}}", session_id=f"s{{i % 50}}",
                           content_hash=content_hash(content), created_at=timezone.now()))
    Memory.objects.bulk_create(rows)
    MemoryVersion.objects.bulk_create([
        MemoryVersion(memory=m, version=2, changed_by="bench", changes={{"importance": {{
            "before": 0.5, "after": 0.6}}}}) for m in rows[::10]])
print(Memory.objects.filter(namespace=ns).count())
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def export_once(port: int, key: str, pid: int, query: str = "") -> dict[str, Any]:
    """Stream one export while sampling the server's RSS every 10 ms."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic() - start, rss_mb(pid)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    size, last = 0, b""
    with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/export{query}", timeout=600,
                      headers={"Authorization": f"Bearer {key}"}, trust_env=False) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            last = (last + chunk)[-4096:]
    done.set()
    sampler.join()
    manifest = json.loads(last.splitlines()[-1])
    return {"bytes": size, "seconds": time.monotonic() - start, "samples": samples,
            "memories": manifest["counts"]["memory"]}


def run(sizes: list[int], workdir: Path) -> dict[str, Any]:
    env = {**os.environ, "MEMORYWEB_ENV": "local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "MEMORYWEB_DATA_DIR": str(workdir), "DJANGO_SETTINGS_MODULE": "memoryweb.settings"}
    manage(env, "migrate", "-v0")
    manage(env, "create_namespace", NAMESPACE)
    key = manage(env, "create_api_key", "--namespace", NAMESPACE, "--role", "admin",
                 "--agent-id", "bench").splitlines()[-1].strip()
    results = []
    for size in sizes:
        filled = manage(env, "shell", "-c", FILL.format(namespace=NAMESPACE, target=size))
        count = int(filled.split()[-1])  # shell prints a banner first
        port = free_port()
        server = start_server(env, port, workdir / f"daphne-{size}.log")
        try:
            export_once(port, key, server.pid, "?agent_id=nobody")  # warm-up: imports, caches
            baseline = rss_mb(server.pid)
            run_ = export_once(port, key, server.pid)
        finally:
            stop_server(server)
        peak = max(mb for _, mb in run_["samples"])
        results.append({"memories": count, "exported": run_["memories"],
                        "mb_exported": round(run_["bytes"] / 2**20, 1),
                        "seconds": round(run_["seconds"], 2),
                        "memories_per_s": round(run_["memories"] / run_["seconds"]),
                        "rss_before_mb": round(baseline, 1), "rss_peak_mb": round(peak, 1),
                        "rss_growth_mb": round(peak - baseline, 1),
                        "timeline": [(round(t, 3), round(mb, 1)) for t, mb in run_["samples"]]})
        print(f"{count:>7} memories  {results[-1]['mb_exported']:>6} MB in "
              f"{results[-1]['seconds']:>6} s  RSS {baseline:.0f} -> {peak:.0f} MB "
              f"(+{peak - baseline:.1f})", flush=True)
    return {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
            "runs": results}


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run_ in report["runs"]:
        t, mb = zip(*run_["timeline"], strict=True)
        left.plot(t, mb, label=f"{run_['memories']:,} memories")
    left.set(xlabel="seconds into the export", ylabel="server RSS (MB)",
             title="Server memory while streaming an export")
    left.legend()
    sizes = [r["memories"] for r in report["runs"]]
    right.bar([f"{s:,}" for s in sizes], [r["rss_growth_mb"] for r in report["runs"]])
    right.set(xlabel="memories exported", ylabel="peak RSS growth (MB)",
              title="Growth over the warmed-up server")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,50000",
                        help="comma-separated namespace sizes, ascending (default %(default)s)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results",
                        help="directory for export_memory.json and .png")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mw-export-bench-"))
    try:
        report = run([int(s) for s in args.sizes.split(",")], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "export_memory.json").write_text(json.dumps(report, indent=1))
    chart(report, args.output / "export_memory.png")
    print(f"wrote {args.output / 'export_memory.json'} and export_memory.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
