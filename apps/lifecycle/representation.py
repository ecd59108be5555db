"""A consolidation's outcome and an unmerge as every door returns them (REST, MCP, the
drop-in routes reformat these rows)."""

from __future__ import annotations

from typing import Any

from apps.lifecycle.consolidation import Outcome, Unmerged
from apps.memories.representation import memory_row


def proposal_rows(outcome: Outcome) -> list[dict[str, Any]]:
    rows = []
    for number, group in enumerate(outcome.groups):
        row = {"members": group.members, "survivor": group.survivor,
               "merged_content": outcome.merged_content(group),
               "tags": list(group.tags),
               "similarity": round(group.similarity, 6),
               "min_similarity": round(group.min_similarity, 6),
               "member_similarity": {k: round(v, 6) for k, v in group.to_survivor().items()}}
        if not outcome.dry_run:
            row["applied"] = outcome.applied[number]
        rows.append(row)
    return rows


def conflict_rows(outcome: Outcome) -> list[dict[str, Any]]:
    return [{"members": [c.a, c.b], "similarity": c.similarity, "differs_in": list(c.differs_in)}
            for c in outcome.conflicts]


def outcome_row(outcome: Outcome) -> dict[str, Any]:
    """What was found (and done): the proposals with their similarities, the conflicts."""
    return {
        "namespace": outcome.namespace.slug, "dry_run": outcome.dry_run,
        "threshold": outcome.threshold, "merged_text": outcome.merged_text,
        "candidates": outcome.candidates,
        "pairs_checked": outcome.pairs_checked, "proposals": proposal_rows(outcome),
        "conflicts": conflict_rows(outcome), "merged": outcome.merged,
        "superseded": outcome.superseded, "stale": outcome.stale,
        "conflicts_linked": outcome.conflicts_linked,
    }


def unmerged_row(unmerged: Unmerged) -> dict[str, Any]:
    return {"memory": memory_row(unmerged.memory), "released": unmerged.released}
