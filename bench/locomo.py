#!/usr/bin/env python
"""Recall quality on LoCoMo: evidence recall@k and MRR for each recall mode, in one run.

Every dialogue turn of the 10 LoCoMo conversations is stored as a memory, one
namespace per conversation, through the service layer (the same code the API runs).
Each question whose evidence turns all resolve is then recalled in every mode
(vector, lexical, hybrid), and the ranks of its evidence turns are scored:

* recall@k: the share of a question's evidence turns found in the top k, averaged;
* MRR: 1 / rank of the first evidence turn found in the top 20 (0 if none), averaged.

The data is read from ../shared/benchmarks/locomo/ (CC BY-NC 4.0; never copied into
this repository). Results go to bench/results/locomo.json and locomo.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks" / "locomo" / "locomo10.json"
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("vector", "lexical", "hybrid")
KS = (1, 5, 10, 20)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def turn_text(turn: dict[str, Any], date: str) -> str:
    """One memory per turn: speaker, session date, what was said (and a shared photo)."""
    text = f"{turn['speaker']} ({date}): {turn['text']}"
    if turn.get("blip_caption"):
        text += f" [shares a photo: {turn['blip_caption']}]"
    return text


def sessions(conversation: dict[str, Any]):
    """(session number, date text, turns) for every non-empty session, in order."""
    numbers = sorted(int(m.group(1)) for key in conversation
                     if (m := re.fullmatch(r"session_(\d+)", key)))
    for n in numbers:
        if conversation[f"session_{n}"]:
            yield n, conversation.get(f"session_{n}_date_time", ""), conversation[f"session_{n}"]


def session_time(text: str) -> str | None:
    """LoCoMo's session date ("1:56 pm on 8 May, 2023") as ISO 8601 UTC, None if unreadable."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None


def evidence_ids(raw: list[str]) -> list[str]:
    """Split packed ids ("D8:6; D9:17") into single ones."""
    return [part for item in raw for part in re.split(r"[;\s]+", item) if part]


def setup_django(data_dir: Path) -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "memoryweb.settings", "MEMORYWEB_ENV": "local", "DEBUG": "false",
        "MEMORYWEB_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING",
        "MEMORYWEB_RECALL_STATS_SECONDS": "3600",  # statistics are not what is measured here
    })
    sys.path.insert(0, str(REPO))
    import django
    from django.core.management import call_command

    from apps.core.conf import prepare_data_dir

    prepare_data_dir()  # the data directory and its secret key, before setup
    django.setup()
    call_command("migrate", verbosity=0)


def ingest(samples: list[dict[str, Any]], principal) -> dict[str, set[str]]:
    """Store every turn; returns the known dia_ids per conversation."""
    from apps.memories import services
    from apps.tenancy.services import create_namespace

    known: dict[str, set[str]] = {}
    total = sum(len(t) for s in samples for _, _, t in sessions(s["conversation"]))
    with tqdm(total=total, desc="ingest", unit="turn") as bar:
        for sample in samples:
            slug = sample["sample_id"].lower()
            create_namespace(slug)
            items = [
                {"content": turn_text(turn, date), "kind": "episode", "session_id": f"session-{n}",
                 "occurred_at": session_time(date),
                 "metadata": {"dia_id": turn["dia_id"], "speaker": turn["speaker"], "session": n,
                              "session_date": date}}
                for n, date, turns in sessions(sample["conversation"]) for turn in turns
            ]
            for start in range(0, len(items), 500):
                services.ingest_many(principal, items[start : start + 500], namespace=slug)
                bar.update(len(items[start : start + 500]))
            known[slug] = {item["metadata"]["dia_id"] for item in items}
    return known


def evaluate(samples, known, principal) -> dict[str, Any]:
    """Recall every resolvable question in every mode; score the evidence ranks."""
    from apps.memories import services

    per_mode: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in MODES}
    per_category: dict[str, dict[int, dict[str, list[float]]]] = {
        m: defaultdict(lambda: defaultdict(list)) for m in MODES}
    latency: dict[str, list[float]] = defaultdict(list)
    questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
    skipped = 0
    for slug, qa in tqdm(questions, desc="recall", unit="q"):
        evidence = set(evidence_ids(qa.get("evidence", [])))
        if not evidence or not evidence <= known[slug]:
            skipped += 1
            continue
        for mode in MODES:
            start = time.perf_counter()
            # pad_to_k: every list has k entries, as when the recorded results were made
            # (docs/recall.md); padding only adds evidence turns at the tail by chance.
            hits = services.recall(principal, {"query": qa["question"], "k": max(KS), "mode": mode,
                                               "namespace": slug, "pad_to_k": True}).hits
            latency[mode].append(time.perf_counter() - start)
            ranked = [h.memory.metadata["dia_id"] for h in hits]
            first = next((i for i, d in enumerate(ranked, 1) if d in evidence), None)
            scores = {f"R@{k}": len(evidence & set(ranked[:k])) / len(evidence) for k in KS}
            scores["MRR"] = 1 / first if first else 0.0
            for name, value in scores.items():
                per_mode[mode][name].append(value)
                per_category[mode][qa["category"]][name].append(value)
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {
        "questions": len(per_mode[MODES[0]]["MRR"]), "skipped_unresolvable": skipped,
        "overall": {m: {n: mean(v) for n, v in per_mode[m].items()} for m in MODES},
        "by_category": {m: {f"{c} {CATEGORIES[c]}": {n: mean(v) for n, v in per_category[m][c].items()}
                            | {"questions": len(per_category[m][c]["MRR"])}
                            for c in sorted(per_category[m])} for m in MODES},
        "latency_ms_p50": {m: sorted(v)[len(v) // 2] * 1000 for m, v in latency.items()},
    }


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [f"R@{k}" for k in KS] + ["MRR"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(MODES)
    colors = {"vector": "#1b9e77", "lexical": "#7570b3", "hybrid": "#d95f02"}
    for i, mode in enumerate(MODES):
        values = [report["overall"][mode][m] for m in metrics]
        bars = ax.bar([x + i * width for x in range(len(metrics))], values, width, label=mode,
                      color=colors[mode])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([x + width for x in range(len(metrics))], metrics)
    ax.set_ylim(0, 1)
    ax.set_ylabel("evidence recall / MRR")
    ax.legend()
    ax.set_title(f"LoCoMo evidence recall, {report['questions']} questions, "
                 f"{report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--conversations", type=int, default=10, help="use the first N (default all 10)")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo.json")
    args = parser.parse_args(argv)
    samples = json.loads(args.data.read_text())[: args.conversations]
    data_dir = Path(tempfile.mkdtemp(prefix="memoryweb-locomo-"))
    try:
        setup_django(data_dir)
        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="bench:locomo", agent_id="locomo", role=Role.SYSTEM)
        known = ingest(samples, principal)
        report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
                  "conversations": len(samples), "turns": sum(len(v) for v in known.values()),
                  **evaluate(samples, known, principal)}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.output.with_suffix(".png"))
    skipped = report["skipped_unresolvable"]
    print(f"{report['questions']} questions, {skipped} skipped (evidence unresolvable)")
    print(f"{'mode':10}" + "".join(f"{m:>8}" for m in [f'R@{k}' for k in KS] + ["MRR", "p50 ms"]))
    for mode in MODES:
        row = report["overall"][mode]
        print(f"{mode:10}" + "".join(f"{row[f'R@{k}']:8.3f}" for k in KS)
              + f"{row['MRR']:8.3f}{report['latency_ms_p50'][mode]:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
