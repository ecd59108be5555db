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
    from apps.memories import services

    hits = services.recall(principal, {"query": question, "k": max(KS), "mode": "hybrid",
                                       "namespace": slug, "pad_to_k": True}).hits
    ranked: list[str] = []
    for hit in hits:
        quoted = [hit.memory.metadata.get("dia_id"), *credit.get(str(hit.memory.pk), [])]
        ranked += [d for d in quoted if d and d not in ranked]
    return ranked[: max(KS)]


def evaluate(samples, known, principal, mode: str) -> dict[str, Any]:
    per: dict[str, list[float]] = defaultdict(list)
    per_category: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
    credits = {slug: lineage(slug) if mode == "after" else {}
               for slug in {slug for slug, _ in questions}}
    for slug, qa in tqdm(questions, desc=f"recall {mode}", unit="q"):
        evidence = set(evidence_ids(qa.get("evidence", [])))
        if not evidence or not evidence <= known[slug]:
            continue
        ranked = ranked_turns(principal, qa["question"], slug, credits[slug])
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
                            for c in sorted(per_category)}}


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


def chart(report: dict[str, Any], path: Path) -> None:
    """Per category and overall, R@5 and MRR of the three modes, one panel per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(9 * len(parts), 4.8), squeeze=False)
    colors = {"before": "#d95f02", "after": "#1b9e77", "after (strict)": "#7570b3"}
    width = 0.27
    for ax, (name, part) in zip(axes[0], parts.items(), strict=True):
        labels, x = [], 0.0
        for group in ["overall", *part["before"]["by_category"]]:
            for metric, hatch in (("R@5", ""), ("MRR", "//")):
                for i, mode in enumerate(MODES):
                    source = part[mode]["overall"] if group == "overall" else part[mode]["by_category"][group]
                    bar = ax.bar(x + i * width, source[metric], width, color=colors[mode], hatch=hatch,
                                 label=f"{mode} {metric}" if group == "overall" else None)
                    ax.bar_label(bar, fmt="%.2f", fontsize=4)
                labels.append((x + width, f"{group.split(' ', 1)[-1]}\n{metric}"))
                x += 1.0
            x += 0.4
        ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("evidence recall@5 / MRR")
        ax.legend(fontsize=6, ncol=2)
        ax.set_title(f"{name} part: {part['before']['questions']} questions, "
                     f"{report['consolidation']['superseded']} turns superseded in all", fontsize=9)
    fig.suptitle(f"LoCoMo before and after consolidation (threshold "
                 f"{report['consolidation']['threshold']}), {report['timestamp'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--part", choices=("both", "tuning", "reporting"), default="both")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo_consolidation.json")
    args = parser.parse_args(argv)
    data = json.loads(args.data.read_text())
    parts = {name: [data[i] for i in indices] for name, indices in part_indices(False).items()
             if args.part in ("both", name)}
    data_dir = Path(tempfile.mkdtemp(prefix="memoryweb-locomo-consolidation-"))
    try:
        setup_django(data_dir)
        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="bench:locomo", agent_id="locomo", role=Role.SYSTEM)
        samples = [s for group in parts.values() for s in group]
        known = ingest(samples, principal)
        before = {name: evaluate(group, known, principal, "before") for name, group in parts.items()}
        consolidation = consolidate_all(principal, [s["sample_id"].lower() for s in samples])
        after = {name: {mode: evaluate(group, known, principal, mode) for mode in MODES[1:]}
                 for name, group in parts.items()}
        report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                              "loadavg": os.getloadavg()},
                  "protocol": {"parts": {n: [s["sample_id"] for s in v] for n, v in parts.items()},
                               "settings": "defaults", "mode": "hybrid"},
                  "turns": sum(len(v) for v in known.values()), "consolidation": consolidation,
                  "parts": {name: {"before": before[name], **after[name]} for name in parts}}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.output.with_suffix(".png"))
    print(f"consolidation: {({k: v for k, v in consolidation.items() if k != 'per_conversation'})}")
    for name, part in report["parts"].items():
        print(f"\n{name} part: {part['before']['questions']} questions")
        print(f"{'':28}" + "".join(f"{m:>16}" for m in MODES))
        for group in ["overall", *part["before"]["by_category"]]:
            for metric in ("R@5", "MRR"):
                row = [(part[m]["overall"] if group == "overall" else part[m]["by_category"][group])[metric]
                       for m in MODES]
                print(f"{group + ' ' + metric:28}" + "".join(f"{v:16.3f}" for v in row)
                      + f"   {row[1] - row[0]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
