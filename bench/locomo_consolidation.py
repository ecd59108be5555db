#!/usr/bin/env python
"""LoCoMo before and after consolidating each conversation (issue 21 item 7), per question
category, in one run.

Every turn is stored as in bench/locomo.py (one namespace per conversation, through the
service layer). Each question is recalled with the default settings (hybrid):

* ``before``: today's recall, no consolidation;
* ``after``: each conversation's namespace consolidated and applied
  (``apps.lifecycle.consolidation.consolidate``, ``dry_run: false``, the default threshold
  MEMORYWEB_CONSOLIDATE_THRESHOLD): turns that say the same thing are superseded by one
  survivor and leave default recall. A survivor among the hits stands for itself and for
  the turns merged into it (its ``derived_from`` lineage: it says what they said), at its
  rank; turns already ranked higher are not counted twice;
* ``after (strict)``: the same hits, a survivor standing for itself only (what is lost if
  a reader does not follow lineage).

Scores as bench/locomo.py: evidence recall@k and MRR over the top 20, overall and per
category. Nothing here is tuned: consolidation runs with its defaults, both parts are
reported (``reporting`` is what docs/lifecycle.md quotes).

Results: bench/results/locomo_consolidation.json and .png.
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

MODES = ("before", "after", "after (strict)")


def lineage(slug: str) -> dict[str, list[str]]:
    """Each survivor's id -> the dia_ids of the turns merged into it."""
    from apps.memories.models import MemoryLink

    merged: dict[str, list[str]] = defaultdict(list)
    for survivor, dia_id in (MemoryLink.objects.filter(source__namespace__slug=slug,
                                                       relation="derived_from")
                             .order_by("source", "target__created_at")
                             .values_list("source_id", "target__metadata__dia_id")):
        merged[str(survivor)].append(dia_id)
    return merged


def ranked_turns(principal, question: str, slug: str, credit: dict[str, list[str]]
                 ) -> list[str]:
    """The top 20 as dia_ids, each hit followed by the turns ``credit`` gives it."""
    return locomo.ranked_dia_ids(locomo.hybrid_hits(principal, question, slug),
                                 lambda memory: [memory.metadata.get("dia_id"),
                                                 *credit.get(str(memory.pk), [])])


def evaluate(samples, known, principal, mode: str) -> dict[str, Any]:
    """The shared scores; ``after`` credits a survivor with the turns merged into it."""
    credits = {slug: lineage(slug) if mode == "after" else {}
               for slug in {s["sample_id"].lower() for s in samples}}
    return locomo.score_questions(samples, known,
                                  lambda slug, question: ranked_turns(principal, question, slug,
                                                                      credits[slug]),
                                  f"recall {mode}")


def consolidate_all(principal, slugs: list[str]) -> dict[str, Any]:
    """Each conversation consolidated and applied with the defaults."""
    from apps.lifecycle.consolidation import consolidate

    started, per = time.perf_counter(), {}
    for slug in tqdm(slugs, desc="consolidate", unit="conversation"):
        outcome = consolidate(principal, slug, {"dry_run": False})
        per[slug] = {"candidates": outcome.candidates, "merged": outcome.merged,
                     "superseded": outcome.superseded, "conflicts_linked": outcome.conflicts_linked}
    return {"seconds": round(time.perf_counter() - started, 1), "threshold": outcome.threshold,
            "candidates": sum(p["candidates"] for p in per.values()),
            "superseded": sum(p["superseded"] for p in per.values()),
            "merged": sum(p["merged"] for p in per.values()), "per_conversation": per}


def measure(principal, parts: dict[str, list[dict[str, Any]]], known: dict[str, set[str]]
            ) -> dict[str, Any]:
    """Every part before, each conversation consolidated, every part after (both ways)."""
    before = {name: evaluate(group, known, principal, "before") for name, group in parts.items()}
    consolidation = consolidate_all(principal, [s["sample_id"].lower() for group in parts.values()
                                                for s in group])
    after = {name: {mode: evaluate(group, known, principal, mode) for mode in MODES[1:]}
             for name, group in parts.items()}
    return {"consolidation": consolidation,
            "parts": {name: {"before": before[name], **after[name]} for name in parts}}


def chart(report: dict[str, Any], path: Path) -> None:
    """Per category and overall, R@5 and MRR of the three modes, one panel per part."""
    superseded, threshold = report["consolidation"]["superseded"], report["consolidation"]["threshold"]
    locomo.chart_variants(report, path, MODES,
                          {"before": "#d95f02", "after": "#1b9e77", "after (strict)": "#7570b3"}, 0.27,
                          f"LoCoMo before and after consolidation (threshold {threshold}), "
                          f"{report['timestamp'][:10]}",
                          lambda name, part: f"{name} part: {part['before']['questions']} questions, "
                                             f"{superseded} turns superseded in all")


def main(argv: list[str] | None = None) -> int:
    report = locomo.run_variant(__doc__, "locomo_consolidation.json", measure,
                                {"settings": "defaults", "mode": "hybrid"}, chart, argv)
    consolidation = report["consolidation"]
    print(f"consolidation: {({k: v for k, v in consolidation.items() if k != 'per_conversation'})}")
    locomo.print_variants(report, MODES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
