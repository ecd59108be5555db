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

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import locomo

MODES = ("hybrid", "hybrid+summaries")


def ranked_turns(principal, question: str, slug: str, grips: dict[str, list[str]]
                 ) -> tuple[list[str], int]:
    """The top 20 as dia_ids, a summary hit replaced by the dia_ids its grips quote; and
    how many summaries were among the hits."""
    def quoted(memory) -> list[str | None]:
        if memory.kind == "summary":
            return grips.get(str(memory.pk), [])
        return [memory.metadata.get("dia_id")]

    hits = locomo.hybrid_hits(principal, question, slug)
    return locomo.ranked_dia_ids(hits, quoted), sum(hit.memory.kind == "summary" for hit in hits)


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
    """The shared scores, and how many summaries a question's top 20 held and the
    median time of a recall."""
    latency: list[float] = []
    summary_hits = 0
    grips = {slug: grips_by_summary(slug) for slug in {s["sample_id"].lower() for s in samples}}

    def rank(slug: str, question: str) -> list[str]:
        nonlocal summary_hits
        start = time.perf_counter()
        ranked, summaries = ranked_turns(principal, question, slug, grips[slug])
        latency.append(time.perf_counter() - start)
        summary_hits += summaries
        return ranked

    scores = locomo.score_questions(samples, known, rank, f"recall {mode}")
    return scores | {
        "summaries_in_top20_per_question": summary_hits / max(1, scores["questions"]),
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


def measure(principal, parts: dict[str, list[dict[str, Any]]], known: dict[str, set[str]]
            ) -> dict[str, Any]:
    """Every part before any rollup, the timelines built, every part again."""
    before = {name: evaluate(group, known, principal, "hybrid") for name, group in parts.items()}
    rollup = build_timelines([s["sample_id"].lower() for group in parts.values() for s in group])
    after = {name: evaluate(group, known, principal, "hybrid+summaries") for name, group in parts.items()}
    return {"rollup": rollup,
            "parts": {name: {"hybrid": before[name], "hybrid+summaries": after[name]} for name in parts}}


def chart(report: dict[str, Any], path: Path) -> None:
    """Per category and overall, R@5 and MRR of both modes, one panel per part."""
    locomo.chart_variants(report, path, MODES, {"hybrid": "#d95f02", "hybrid+summaries": "#1b9e77"},
                          0.35, f"LoCoMo: hybrid vs hybrid + timeline summaries, {report['timestamp'][:10]}",
                          lambda name, part: f"{name} part: {part['hybrid']['questions']} questions")


def main(argv: list[str] | None = None) -> int:
    report = locomo.run_variant(__doc__, "locomo_summaries.json", measure,
                                {"summarizer": "extractive (default)", "settings": "defaults"}, chart, argv)
    print(f"rollup: {report['rollup']}")
    locomo.print_variants(report, MODES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
