#!/usr/bin/env python
"""LoCoMo with the timeline's summaries as an extra recall source, against plain hybrid,
per question category, in one run.

Every turn is stored as in bench/locomo.py (one namespace per conversation, through the
service layer). Each question is then recalled twice with the default settings:

* ``hybrid``: before any rollup exists — today's default recall, the baseline;
* ``hybrid+summaries``: after ``apps.timeline`` built each conversation's timeline
  (segment, day, week, month and year summaries, each a recallable memory of kind
  ``summary``). A summary among the hits stands for the turns its grips quote, at its
  rank, in grip order (a reader who gets a summary can expand its grips); turns already
  ranked higher are not counted twice.

Scores as bench/locomo.py: evidence recall@k (share of a question's evidence turns in
the top k) and MRR over the top 20, overall and per category (multi-hop and temporal
are where summaries should help). The tuning protocol: nothing here is tuned; the
timeline runs with its defaults and the offline extractive summarizer, and both parts
are reported (``reporting`` is what docs/timeline.md quotes).

Results: bench/results/locomo_summaries.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.locomo import (
    CATEGORIES,
    DEFAULT_DATA,
    KS,
    RESULTS,
    evidence_ids,
    ingest,
    part_indices,
    setup_django,
)

MODES = ("hybrid", "hybrid+summaries")


def ranked_turns(principal, question: str, slug: str, grips: dict[str, list[str]]
                 ) -> tuple[list[str], int]:
    """The top 20 as dia_ids, a summary hit replaced by the dia_ids its grips quote; and
    how many summaries were among the hits."""
    from apps.memories import services

    hits = services.recall(principal, {"query": question, "k": max(KS), "mode": "hybrid",
                                       "namespace": slug, "pad_to_k": True}).hits
    ranked: list[str] = []
    summaries = 0
    for hit in hits:
        memory = hit.memory
        if memory.kind == "summary":
            summaries += 1
            quoted = grips.get(str(memory.pk), [])
        else:
            quoted = [memory.metadata.get("dia_id")]
        ranked += [d for d in quoted if d and d not in ranked]
    return ranked[: max(KS)], summaries


def grips_by_summary(slug: str) -> dict[str, list[str]]:
    """Each summary memory's id -> the dia_ids of the turns its node's grips quote."""
    from apps.timeline.models import Grip

    quoted: dict[str, list[str]] = defaultdict(list)
    for memory_id, dia_id in (Grip.objects.filter(node__namespace__slug=slug,
                                                  node__memory__isnull=False)
                              .order_by("node", "position")
                              .values_list("node__memory_id", "memory__metadata__dia_id")):
        if dia_id not in quoted[str(memory_id)]:
            quoted[str(memory_id)].append(dia_id)
    return quoted


def evaluate(samples, known, principal, mode: str) -> dict[str, Any]:
    per: dict[str, list[float]] = defaultdict(list)
    per_category: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    latency: list[float] = []
    summary_hits = 0
    questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
    grips = {slug: grips_by_summary(slug) for slug in {slug for slug, _ in questions}}
    for slug, qa in tqdm(questions, desc=f"recall {mode}", unit="q"):
        evidence = set(evidence_ids(qa.get("evidence", [])))
        if not evidence or not evidence <= known[slug]:
            continue
        start = time.perf_counter()
        ranked, summaries = ranked_turns(principal, qa["question"], slug, grips[slug])
        latency.append(time.perf_counter() - start)
        summary_hits += summaries
        first = next((i for i, d in enumerate(ranked, 1) if d in evidence), None)
        scores = {f"R@{k}": len(evidence & set(ranked[:k])) / len(evidence) for k in KS}
        scores["MRR"] = 1 / first if first else 0.0
        for name, value in scores.items():
            per[name].append(value)
            per_category[qa["category"]][name].append(value)
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {"questions": len(per["MRR"]),
            "overall": {n: mean(v) for n, v in per.items()},
            "by_category": {f"{c} {CATEGORIES[c]}": {n: mean(v) for n, v in per_category[c].items()}
                            | {"questions": len(per_category[c]["MRR"])}
                            for c in sorted(per_category)},
            "summaries_in_top20_per_question": summary_hits / max(1, len(per["MRR"])),
            "latency_ms_p50": sorted(latency)[len(latency) // 2] * 1000 if latency else None}


def build_timelines(slugs: list[str]) -> dict[str, Any]:
    """Each conversation's timeline, built as ``manage.py rollup`` builds it."""
    from apps.tenancy.models import Namespace
    from apps.timeline.models import Grip, RollupNode
    from apps.timeline.services import build

    started = time.perf_counter()
    for slug in tqdm(slugs, desc="rollup", unit="conversation"):
        report = build(Namespace.objects.get(slug=slug))
        if report.failed:
            raise SystemExit(f"rollup of {slug} failed: {report.failed[:3]}")
    nodes = RollupNode.objects.filter(namespace__slug__in=slugs)
    return {"seconds": round(time.perf_counter() - started, 1),
            "nodes": {level: nodes.filter(level=level).count()
                      for level in ("segment", "day", "week", "month", "year")},
            "grips": Grip.objects.filter(node__namespace__slug__in=slugs).count()}


def chart(report: dict[str, Any], path: Path) -> None:
    """Per category and overall, R@5 and MRR of both modes, one panel per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(8 * len(parts), 4.8), squeeze=False)
    colors = {"hybrid": "#d95f02", "hybrid+summaries": "#1b9e77"}
    for ax, (name, part) in zip(axes[0], parts.items(), strict=True):
        groups = ["overall", *part["hybrid"]["by_category"]]
        labels, x = [], 0.0
        for group in groups:
            for metric, hatch in (("R@5", ""), ("MRR", "//")):
                for i, mode in enumerate(MODES):
                    source = part[mode]["overall"] if group == "overall" else part[mode]["by_category"][group]
                    bar = ax.bar(x + i * 0.35, source[metric], 0.35, color=colors[mode], hatch=hatch,
                                 label=f"{mode} {metric}" if group == "overall" else None)
                    ax.bar_label(bar, fmt="%.2f", fontsize=5)
                labels.append((x + 0.17, f"{group.split(' ', 1)[-1]}\n{metric}"))
                x += 0.9
            x += 0.4
        ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("evidence recall@5 / MRR")
        ax.legend(fontsize=7)
        ax.set_title(f"{name} part: {part['hybrid']['questions']} questions", fontsize=10)
    fig.suptitle(f"LoCoMo: hybrid vs hybrid + timeline summaries, {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--part", choices=("both", "tuning", "reporting"), default="both")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo_summaries.json")
    args = parser.parse_args(argv)
    data = json.loads(args.data.read_text())
    parts = {name: [data[i] for i in indices] for name, indices in part_indices(False).items()
             if args.part in ("both", name)}
    data_dir = Path(tempfile.mkdtemp(prefix="memoryweb-locomo-summaries-"))
    try:
        setup_django(data_dir)
        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="bench:locomo", agent_id="locomo", role=Role.SYSTEM)
        samples = [s for group in parts.values() for s in group]
        known = ingest(samples, principal)
        before = {name: evaluate(group, known, principal, "hybrid") for name, group in parts.items()}
        rollup = build_timelines([s["sample_id"].lower() for s in samples])
        after = {name: evaluate(group, known, principal, "hybrid+summaries")
                 for name, group in parts.items()}
        report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                              "loadavg": os.getloadavg()},
                  "protocol": {"parts": {n: [s["sample_id"] for s in v] for n, v in parts.items()},
                               "summarizer": "extractive (default)", "settings": "defaults"},
                  "turns": sum(len(v) for v in known.values()), "rollup": rollup,
                  "parts": {name: {"hybrid": before[name], "hybrid+summaries": after[name]}
                            for name in parts}}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.output.with_suffix(".png"))
    print(f"rollup: {rollup}")
    for name, part in report["parts"].items():
        print(f"\n{name} part: {part['hybrid']['questions']} questions")
        print(f"{'':28}" + "".join(f"{m:>16}" for m in MODES))
        groups = ["overall", *part["hybrid"]["by_category"]]
        for group in groups:
            for metric in ("R@5", "MRR"):
                row = [(part[m]["overall"] if group == "overall" else part[m]["by_category"][group])[metric]
                       for m in MODES]
                print(f"{group + ' ' + metric:28}" + "".join(f"{v:16.3f}" for v in row)
                      + f"   {row[1] - row[0]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
