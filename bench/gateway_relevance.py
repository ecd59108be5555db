"""How relevant must a memory be for the gateway to inject it? The cosine floor
(``MEMORYWEB_GATEWAY_MIN_SIMILARITY``) chosen on LoCoMo's tuning part, reported on its
reporting part.

Hybrid fusion scales each channel to its best candidate, so the nearest memory scores
high however far it is: a fused score cannot tell "relevant" from "the least irrelevant".
The gateway therefore also asks each hybrid hit for its cosine similarity to the query
(the vector channel's raw score) or a keyword match. This bench stores every LoCoMo turn
(bench/locomo.py: one namespace per conversation) and, for each question, recalls as the
gateway does (hybrid, k = MEMORYWEB_GATEWAY_RECALL_K, the fused minimum score):

* **own**: in its own conversation. A hit is *evidence* when it is one of the question's
  evidence turns. What a floor keeps of the evidence hits is the cost.
* **foreign**: in another conversation of the same part (the next one): every hit is a
  memory that does not answer the question. What a floor still injects there is the leak.

For each floor from 0 to 0.6 and each rule (``RULES``: a keyword match passes or not) it
reports the share of evidence hits kept, the share of foreign questions that still get at
least one memory injected, and the memories injected per question. The chosen floor is the
highest that keeps at least ``--keep`` (95%) of the tuning part's evidence hits that have a
cosine (those the vector channel found: the only ones a floor can drop under the gateway's
rule, since a keyword match passes); the reporting part is measured once at it.

    .venv/bin/python bench/gateway_relevance.py [--output bench/results/gateway_relevance.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import locomo

FLOORS = [round(0.05 * i, 2) for i in range(13)]


def hits_of(principal, question: str, slug: str, k: int, min_score: float
            ) -> list[tuple[str, float | None, bool]]:
    """(dia_id, cosine or None, keyword match) of the gateway's recall."""
    from apps.memories import services

    result = services.recall(principal, {"query": question, "k": k, "mode": "hybrid",
                                         "namespace": slug, "min_score": min_score})
    found = []
    for hit in result.hits:
        vector = hit.parts.get("vector")
        lexical = hit.parts.get("lexical")
        found.append(((hit.memory.metadata or {}).get("dia_id"),
                      None if vector is None else float(vector["raw"]),
                      lexical is not None and float(lexical.get("raw", 0)) > 0))
    return found


#: The rules compared: what the gateway injects at a floor.
RULES = {
    # cosine at least the floor, or any keyword match
    "cosine_or_keyword": lambda cosine, keyword, floor: keyword or (
        cosine is not None and cosine >= floor),
    # cosine at least the floor; a hit the vector channel did not return is left out
    "cosine_only": lambda cosine, keyword, floor: cosine is not None and cosine >= floor,
}


def kept(hit: tuple[str, float | None, bool], floor: float, rule: str) -> bool:
    """Whether the gateway injects ``hit`` at this floor under ``rule``."""
    _, cosine, keyword = hit
    return RULES[rule](cosine, keyword, floor)


def measure(samples: list[dict[str, Any]], known: dict[str, set[str]], principal, k: int,
            min_score: float, desc: str) -> dict[str, Any]:
    slugs = [s["sample_id"].lower() for s in samples]
    own, foreign = [], []
    questions = [(n, qa) for n, s in enumerate(samples) for qa in s["qa"]]
    for n, qa in tqdm(questions, desc=desc, unit="q"):
        evidence = set(locomo.evidence_ids(qa.get("evidence", [])))
        slug = slugs[n]
        if not evidence or not evidence <= known[slug]:
            continue
        own.append([(hit, hit[0] in evidence) for hit in
                    hits_of(principal, qa["question"], slug, k, min_score)])
        other = slugs[(n + 1) % len(slugs)]
        foreign.append(hits_of(principal, qa["question"], other, k, min_score))
    evidence_hits = [h for q in own for h, is_evidence in q if is_evidence]
    with_cosine = [h for h in evidence_hits if h[1] is not None]
    floors = [{"floor": floor,
               "vector_evidence_kept": sum(h[1] >= floor for h in with_cosine)
               / max(1, len(with_cosine))} for floor in FLOORS]
    rules = {}
    for rule in RULES:
        rows = []
        for floor in FLOORS:
            rows.append({
                "floor": floor,
                "evidence_kept": sum(kept(h, floor, rule) for h in evidence_hits)
                / max(1, len(evidence_hits)),
                "own_injected_per_question": sum(kept(h, floor, rule) for q in own for h, _ in q)
                / max(1, len(own)),
                "foreign_with_any": sum(any(kept(h, floor, rule) for h in q) for q in foreign)
                / max(1, len(foreign)),
                "foreign_injected_per_question": sum(kept(h, floor, rule) for q in foreign
                                                     for h in q) / max(1, len(foreign))})
        rules[rule] = rows
    return {"questions": len(own), "evidence_hits": len(evidence_hits),
            "evidence_hits_without_cosine": len(evidence_hits) - len(with_cosine),
            "floors": floors, "rules": rules}


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for part, style in (("tuning", "-"), ("reporting", "--")):
        rows = report["parts"][part]["rules"][report["rule"]]
        floors = [r["floor"] for r in rows]
        ax.plot(floors, [r["evidence_kept"] for r in rows], style, color="tab:green",
                label=f"{part}: evidence hits kept")
        ax.plot(floors, [r["vector_evidence_kept"] for r in report["parts"][part]["floors"]],
                style, color="tab:blue", label=f"{part}: evidence hits with a cosine kept")
        ax.plot(floors, [r["foreign_with_any"] for r in rows], style, color="tab:red",
                label=f"{part}: other conversation's questions still injected")
        only = report["parts"][part]["rules"]["cosine_only"]
        ax.plot(floors, [r["foreign_with_any"] for r in only], style, color="tab:orange",
                label=f"{part}: the same, keyword matches not passed")
    ax.axvline(report["chosen_floor"], color="grey", linestyle=":",
               label=f"chosen floor {report['chosen_floor']}")
    ax.set_xlabel(f"cosine floor (rule: {report['rule']})")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title("Gateway injection: relevance floor on LoCoMo (hybrid, k=8)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=locomo.DEFAULT_DATA, help="locomo10.json")
    parser.add_argument("--keep", type=float, default=0.95,
                        help="the share of the evidence hits the vector channel found (those "
                        "with a cosine) the floor must keep on the tuning part (0.95)")
    parser.add_argument("--rule", choices=sorted(RULES), default="cosine_or_keyword",
                        help="the rule reported at the chosen floor (cosine_or_keyword: the "
                        "gateway's)")
    parser.add_argument("--output", type=Path,
                        default=locomo.RESULTS / "gateway_relevance.json")
    args = parser.parse_args(argv)
    samples = json.loads(args.data.read_text())
    with tempfile.TemporaryDirectory(prefix="mw-bench-relevance-") as tmp:
        locomo.setup_django(Path(tmp))
        from django.conf import settings

        from apps.core.roles import Role
        from apps.tenancy.principal import Principal

        principal = Principal(label="system:bench", agent_id="bench", role=Role.SYSTEM)
        known = locomo.ingest(samples, principal)
        k, min_score = settings.MEMORYWEB_GATEWAY_RECALL_K, settings.MEMORYWEB_GATEWAY_MIN_SCORE
        parts = {name: measure([samples[i] for i in indices], known, principal, k, min_score,
                               name) for name, indices in locomo.PARTS.items()}
    tuning = parts["tuning"]["rules"][args.rule]
    chosen = max((r["floor"] for r in parts["tuning"]["floors"]
                  if r["vector_evidence_kept"] >= args.keep), default=0.0)
    report = {"k": k, "min_score": min_score, "keep": args.keep, "rule": args.rule,
              "chosen_floor": chosen, "chosen_on": "tuning", "parts": parts,
              "reporting_at_chosen": next(r for r in parts["reporting"]["rules"][args.rule]
                                          if r["floor"] == chosen)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, args.output.with_suffix(".png"))
    print(json.dumps({"chosen_floor": chosen, "reporting": report["reporting_at_chosen"],
                      "tuning": next(r for r in tuning if r["floor"] == chosen)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
