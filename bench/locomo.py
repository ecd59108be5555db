#!/usr/bin/env python
"""Recall quality on LoCoMo: evidence recall@k and MRR for each recall mode, in one run.

Every dialogue turn of the 10 LoCoMo conversations is stored as a memory, one
namespace per conversation, through the service layer (the same code the API runs).
Each question whose evidence turns all resolve is then recalled in every mode
(vector, lexical, hybrid), and the ranks of its evidence turns are scored:

* recall@k: the share of a question's evidence turns found in the top k, averaged;
* MRR: 1 / rank of the first evidence turn found in the top 20 (0 if none), averaged.

The tuning protocol (docs/recall.md): the conversations are split in two parts,
``tuning`` (conversations 1-5) and ``reporting`` (6-10). Defaults are chosen on the
tuning part only and reported on the reporting part, which no choice has looked at;
``--swap`` exchanges the parts, to check that what was chosen on one holds on the other.
Each part is scored on its own, and against ``rrf``: a plain reciprocal-rank fusion of
the two channels (equal weights, nothing else), the untuned baseline every gain is
measured from. ``--set`` overrides a setting for a tuning sweep.

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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks" / "locomo" / "locomo10.json"
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("vector", "lexical", "hybrid", "rrf")
#: The untuned baseline: hybrid recall with plain reciprocal-rank fusion, the two
#: channels weighted alike, no session input and no priors.
PLAIN_RRF = {"MEMORYWEB_FUSION": "rrf",
             "MEMORYWEB_FUSION_WEIGHTS": {"vector": 1.0, "lexical": 1.0, "session": 0.0,
                                          "recency": 0.0, "importance": 0.0, "rerank": 0.0}}
#: Conversation indices of each part (0-based: conversations 1-5 and 6-10).
PARTS = {"tuning": range(0, 5), "reporting": range(5, 10)}
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


def recall_ranked(principal, question: str, slug: str, mode: str) -> list[str]:
    """The dia_ids of the top 20 for one question in one mode (``rrf``: the baseline)."""
    from django.test import override_settings

    from apps.memories import services

    # pad_to_k: every list has k entries, as when the recorded results were made
    # (docs/recall.md); padding only adds evidence turns at the tail by chance.
    request = {"query": question, "k": max(KS), "mode": "hybrid" if mode == "rrf" else mode,
               "namespace": slug, "pad_to_k": True}
    with override_settings(**(PLAIN_RRF if mode == "rrf" else {})):
        hits = services.recall(principal, request).hits
    return [h.memory.metadata["dia_id"] for h in hits]


def evidence_scores(evidence: set[str], ranked: list[str]) -> dict[str, float]:
    """One question's scores: the share of its evidence turns in the top k of ``ranked``
    for each k, and MRR (1 / rank of the first evidence turn, 0 if none)."""
    first = next((i for i, d in enumerate(ranked, 1) if d in evidence), None)
    scores = {f"R@{k}": len(evidence & set(ranked[:k])) / len(evidence) for k in KS}
    scores["MRR"] = 1 / first if first else 0.0
    return scores


def mean(values: list[float]) -> float:
    """The average, 0 for no values (a category or mode with no question scores 0)."""
    return sum(values) / len(values) if values else 0.0


def by_category(per_category: dict[int, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Each category's mean scores and its number of questions, keyed "4 single-hop"."""
    return {f"{c} {CATEGORIES[c]}": {n: mean(v) for n, v in per_category[c].items()}
            | {"questions": len(per_category[c]["MRR"])} for c in sorted(per_category)}


def evaluate(samples, known, principal, modes=MODES) -> dict[str, Any]:
    """Recall every resolvable question in every mode; score the evidence ranks."""
    per_mode: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in modes}
    per_category: dict[str, dict[int, dict[str, list[float]]]] = {
        m: defaultdict(lambda: defaultdict(list)) for m in modes}
    latency: dict[str, list[float]] = defaultdict(list)
    questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
    skipped = 0
    for slug, qa in tqdm(questions, desc="recall", unit="q"):
        evidence = set(evidence_ids(qa.get("evidence", [])))
        if not evidence or not evidence <= known[slug]:
            skipped += 1
            continue
        for mode in modes:
            start = time.perf_counter()
            ranked = recall_ranked(principal, qa["question"], slug, mode)
            latency[mode].append(time.perf_counter() - start)
            for name, value in evidence_scores(evidence, ranked).items():
                per_mode[mode][name].append(value)
                per_category[mode][qa["category"]][name].append(value)
    return {
        "conversations": [s["sample_id"] for s in samples],
        "questions": len(per_mode[modes[0]]["MRR"]), "skipped_unresolvable": skipped,
        "overall": {m: {n: mean(v) for n, v in per_mode[m].items()} for m in modes},
        "by_category": {m: by_category(per_category[m]) for m in modes},
        "latency_ms_p50": {m: sorted(v)[len(v) // 2] * 1000 for m, v in latency.items()},
    }


def chart(report: dict[str, Any], path: Path) -> None:
    """One panel per part: each mode's R@k and MRR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [f"R@{k}" for k in KS] + ["MRR"]
    parts = report["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(7 * len(parts), 4.5), squeeze=False)
    colors = {"vector": "#1b9e77", "lexical": "#7570b3", "hybrid": "#d95f02", "rrf": "#999999"}
    for ax, (name, part) in zip(axes[0], parts.items(), strict=True):
        modes = list(part["overall"])
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            values = [part["overall"][mode][m] for m in metrics]
            bars = ax.bar([x + i * width for x in range(len(metrics))], values, width,
                          label="plain RRF" if mode == "rrf" else mode, color=colors.get(mode))
            ax.bar_label(bars, fmt="%.2f", fontsize=6)
        ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(metrics))], metrics)
        ax.set_ylim(0, 1)
        ax.set_ylabel("evidence recall / MRR")
        ax.legend(fontsize=8)
        ax.set_title(f"{name} part: conversations {part['conversations'][0]}..."
                     f"{part['conversations'][-1]}, {part['questions']} questions", fontsize=10)
    fig.suptitle(f"LoCoMo evidence recall, {report['timestamp'][:10]}"
                 + (" (parts swapped)" if report["protocol"]["swapped"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` (JSON, else a string) or ``NAME.key=VALUE`` for one key of a dict
    setting, as Django settings for override_settings."""
    from django.conf import settings

    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        name, _, key = name.partition(".")
        if key:
            overrides[name] = {**overrides.get(name, getattr(settings, name)), key: value}
        else:
            overrides[name] = value
    return overrides


def part_indices(swap: bool) -> dict[str, range]:
    if not swap:
        return dict(PARTS)
    return {"tuning": PARTS["reporting"], "reporting": PARTS["tuning"]}


# --- before/after variants (bench/locomo_summaries.py, bench/locomo_consolidation.py) ---------
# They store every turn as above, then score default (hybrid) recall before and after
# a change to the store, the same questions scored the same way: the loop is here once.

def hybrid_hits(principal, question: str, slug: str) -> list:
    """Default recall's top 20 for one question: hybrid, padded to k as above."""
    from apps.memories import services

    return services.recall(principal, {"query": question, "k": max(KS), "mode": "hybrid",
                                       "namespace": slug, "pad_to_k": True}).hits


def ranked_dia_ids(hits: list, quoted: Callable[[Any], list[str | None]]) -> list[str]:
    """The hits as the top 20 dia_ids, each hit's memory replaced by the turns
    ``quoted(memory)`` says it stands for, at its rank; a turn ranked higher is not
    counted twice."""
    ranked: list[str] = []
    for hit in hits:
        ranked += [d for d in quoted(hit.memory) if d and d not in ranked]
    return ranked[: max(KS)]


def score_questions(samples, known: dict[str, set[str]], rank: Callable[[str, str], list[str]],
                    desc: str) -> dict[str, Any]:
    """Every question of ``samples`` whose evidence turns all resolve, ranked by
    ``rank(slug, question)`` (dia_ids, best first), scored overall and per category."""
    per: dict[str, list[float]] = defaultdict(list)
    per_category: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    questions = [(s["sample_id"].lower(), qa) for s in samples for qa in s["qa"]]
    for slug, qa in tqdm(questions, desc=desc, unit="q"):
        evidence = set(evidence_ids(qa.get("evidence", [])))
        if not evidence or not evidence <= known[slug]:
            continue
        for name, value in evidence_scores(evidence, rank(slug, qa["question"])).items():
            per[name].append(value)
            per_category[qa["category"]][name].append(value)
    return {"questions": len(per["MRR"]), "overall": {n: mean(v) for n, v in per.items()},
            "by_category": by_category(per_category)}


#: What a variant measures once every turn is stored: (principal, parts, known dia_ids per
#: conversation) -> its own report fields, ``parts`` among them ({part: {mode: scores}}).
Measure = Callable[[Any, dict[str, list[dict[str, Any]]], dict[str, set[str]]], dict[str, Any]]


def run_variant(doc: str, output: str, measure: Measure, protocol: dict[str, Any],
                chart_to: Callable[[dict[str, Any], Path], None], argv: list[str] | None
                ) -> dict[str, Any]:
    """A variant's command line (``--data``, ``--part``, ``--output``; ``doc`` is its
    --help), every turn of the chosen parts stored on a fresh data dir, ``measure``, and
    the report written to ``--output`` (``chart_to`` draws the PNG beside it)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--part", choices=("both", "tuning", "reporting"), default="both")
    parser.add_argument("--output", type=Path, default=RESULTS / output)
    args = parser.parse_args(argv)
    data = json.loads(args.data.read_text())
    parts = {name: [data[i] for i in indices] for name, indices in part_indices(False).items()
             if args.part in ("both", name)}
    data_dir = Path(tempfile.mkdtemp(prefix=f"memoryweb-{Path(output).stem.replace('_', '-')}-"))
    try:
        setup_django(data_dir)
        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="bench:locomo", agent_id="locomo", role=Role.SYSTEM)
        known = ingest([s for group in parts.values() for s in group], principal)
        measured = measure(principal, parts, known)
        report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                              "loadavg": os.getloadavg()},
                  "protocol": {"parts": {n: [s["sample_id"] for s in v] for n, v in parts.items()},
                               **protocol},
                  "turns": sum(len(v) for v in known.values()), **measured}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart_to(report, args.output.with_suffix(".png"))
    return report


def print_variants(report: dict[str, Any], modes: tuple[str, ...]) -> None:
    """Per part, R@5 and MRR of each mode, overall and per category, and the second
    mode's gain over the first."""
    for name, part in report["parts"].items():
        print(f"\n{name} part: {part[modes[0]]['questions']} questions")
        print(f"{'':28}" + "".join(f"{m:>16}" for m in modes))
        for group in ["overall", *part[modes[0]]["by_category"]]:
            for metric in ("R@5", "MRR"):
                row = [(part[m]["overall"] if group == "overall" else part[m]["by_category"][group])[metric]
                       for m in modes]
                print(f"{group + ' ' + metric:28}" + "".join(f"{v:16.3f}" for v in row)
                      + f"   {row[1] - row[0]:+.3f}")


def chart_variants(report: dict[str, Any], path: Path, modes: tuple[str, ...], colors: dict[str, str],
                   width: float, title: str, panel_title: Callable[[str, dict[str, Any]], str]) -> None:
    """Per category and overall, R@5 and MRR of each mode, one panel per part; more modes,
    a wider panel and smaller type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = report["parts"]
    extra = len(modes) - 2
    fig, axes = plt.subplots(1, len(parts), figsize=((8 + extra) * len(parts), 4.8), squeeze=False)
    for ax, (name, part) in zip(axes[0], parts.items(), strict=True):
        labels, x = [], 0.0
        for group in ["overall", *part[modes[0]]["by_category"]]:
            for metric, hatch in (("R@5", ""), ("MRR", "//")):
                for i, mode in enumerate(modes):
                    source = part[mode]["overall"] if group == "overall" else part[mode]["by_category"][group]
                    bar = ax.bar(x + i * width, source[metric], width, color=colors[mode], hatch=hatch,
                                 label=f"{mode} {metric}" if group == "overall" else None)
                    ax.bar_label(bar, fmt="%.2f", fontsize=5 - extra)
                labels.append((x + width * (len(modes) - 1) / 2, f"{group.split(' ', 1)[-1]}\n{metric}"))
                x += width * len(modes) + 0.2
            x += 0.4
        ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("evidence recall@5 / MRR")
        ax.legend(fontsize=7 - extra, ncol=1 + extra)
        ax.set_title(panel_title(name, part), fontsize=10 - extra)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--part", choices=("both", "tuning", "reporting"), default="both",
                        help="which part(s) to run (default both, each scored on its own)")
    parser.add_argument("--swap", action="store_true",
                        help="tuning = conversations 6-10, reporting = 1-5")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)} (default all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting for this run (JSON value; NAME.key for one key "
                             "of a dict setting, e.g. MEMORYWEB_FUSION_WEIGHTS.lexical=2)")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo.json")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    data = json.loads(args.data.read_text())
    parts = {name: [data[i] for i in indices] for name, indices in part_indices(args.swap).items()
             if args.part in ("both", name)}
    data_dir = Path(tempfile.mkdtemp(prefix="memoryweb-locomo-"))
    try:
        setup_django(data_dir)
        from django.test import override_settings

        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        overrides = parse_overrides(args.overrides)
        override_settings(**overrides).enable()
        principal = Principal(label="bench:locomo", agent_id="locomo", role=Role.SYSTEM)
        known = ingest([s for samples in parts.values() for s in samples], principal)
        report = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                  "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
                  "protocol": {"swapped": args.swap, "settings": overrides,
                               "parts": {n: [s["sample_id"] for s in v] for n, v in parts.items()}},
                  "turns": sum(len(v) for v in known.values()),
                  "parts": {name: evaluate(samples, known, principal, modes)
                            for name, samples in parts.items()}}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.output.with_suffix(".png"))
    for name, part in report["parts"].items():
        print(f"\n{name} part ({', '.join(part['conversations'])}): {part['questions']} questions, "
              f"{part['skipped_unresolvable']} skipped (evidence unresolvable)")
        print(f"{'mode':10}" + "".join(f"{m:>8}" for m in [f'R@{k}' for k in KS] + ["MRR", "p50 ms"]))
        for mode in modes:
            row = part["overall"][mode]
            print(f"{mode:10}" + "".join(f"{row[f'R@{k}']:8.3f}" for k in KS)
                  + f"{row['MRR']:8.3f}{part['latency_ms_p50'][mode]:8.1f}")
        if {"hybrid", "rrf"} <= set(modes):
            gain = {m: part["overall"]["hybrid"][m] - part["overall"]["rrf"][m]
                    for m in ("R@5", "R@10", "MRR")}
            print("hybrid - plain RRF: " + ", ".join(f"{m} {v:+.3f}" for m, v in gain.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
