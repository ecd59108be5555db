"""A memory's strength: how much it should still count, from what MemoryWeb knows of it.

    strength = superseded * conflicted * sum(w * x) / sum(w)            (0..1)

over five parts, each 0..1 (docs/lifecycle.md, "Strength and decay"):

- ``importance`` and ``confidence``: as stored (the agent's or an editor's judgement);
- ``use``: ``1 - exp(-access_count / 5)``: recalled often, stronger (5 recalls: 0.63);
- ``age``: ``0.5 ^ (days / half-life)`` since it happened or was last recalled, whichever
  is later (recall refreshes it); the half-life is the namespace's
  ``recall_defaults.strength_half_life_days``, else ``MEMORYWEB_STRENGTH_HALF_LIFE_DAYS``;
- ``track``: the source agent's record, ``1 - (later corrected + deleted + 1) / (stored +
  10)``: a Bayesian estimate that starts at 0.9 for an agent with no history (erasures
  are not counted: apps/memories/track_record.py).

Then two factors: 0.1 when a consolidation superseded the memory (another says it now),
0.8 when it is in conflict with another (``conflicts_with``): one of the two is wrong.

Pure functions over rows already read, plus :func:`for_memories`, which reads what they
need in two queries (the agents' records, the conflict links) for any number of memories:
recall's prior and ``GET /api/v1/memories/{id}`` use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.memories import track_record
from apps.memories.models import AgentRecord, Memory, MemoryLink

#: The parts' weights (equal: none was measured to deserve more).
WEIGHTS: Mapping[str, float] = {"importance": 1.0, "confidence": 1.0, "use": 1.0, "age": 1.0,
                                "track": 1.0}
SUPERSEDED = 0.1
CONFLICTED = 0.8
#: Recalls at which ``use`` reaches 1 - 1/e.
USE_SCALE = 5.0
#: The track record's prior: as if an agent had stored 10 memories, 1 of them corrected.
TRACK_PRIOR_STORED, TRACK_PRIOR_BAD = 10, 1


@dataclass(frozen=True)
class Strength:
    value: float
    parts: Mapping[str, float]
    factors: Mapping[str, float]

    def as_dict(self) -> dict[str, Any]:
        """As ``GET /api/v1/memories/{id}`` and explain show it."""
        return {"value": round(self.value, 4),
                "parts": {name: {"value": round(value, 4), "weight": WEIGHTS[name]}
                          for name, value in self.parts.items()},
                "factors": {name: value for name, value in self.factors.items()}}


def half_life_days(namespace) -> float:
    """The namespace's ``recall_defaults.strength_half_life_days``, else the server's."""
    own = (getattr(namespace, "recall_defaults", None) or {}).get("strength_half_life_days")
    return float(own or settings.MEMORYWEB_STRENGTH_HALF_LIFE_DAYS)


def track(record: AgentRecord | None) -> float:
    """The source agent's record as 0..1 (0.9 with no history)."""
    stored = record.stored if record else 0
    bad = (record.corrected + record.deleted) if record else 0
    return max(0.0, 1.0 - (bad + TRACK_PRIOR_BAD) / (stored + TRACK_PRIOR_STORED))


def compute(memory: Memory, *, record: AgentRecord | None, conflicted: bool,
            half_life: float, now: datetime | None = None) -> Strength:
    """One memory's strength (pure: everything it needs is given)."""
    now = now or timezone.now()
    last = max(t for t in (memory.event_time, memory.last_recalled_at) if t is not None)
    days = max((now - last).total_seconds(), 0.0) / 86400
    parts = {
        "importance": _unit(memory.importance),
        "confidence": _unit(memory.confidence),
        "use": 1.0 - math.exp(-(memory.access_count or 0) / USE_SCALE),
        "age": 0.5 ** (days / half_life),
        "track": track(record),
    }
    mean = sum(WEIGHTS[name] * value for name, value in parts.items()) / sum(WEIGHTS.values())
    factors: dict[str, float] = {}
    if memory.superseded_by_id is not None:
        factors["superseded"] = SUPERSEDED
    if conflicted:
        factors["conflicted"] = CONFLICTED
    value = mean
    for factor in factors.values():
        value *= factor
    return Strength(value=value, parts=parts, factors=factors)


def for_memories(namespace, memories: Sequence[Memory], now: datetime | None = None
                 ) -> dict[str, Strength]:
    """Strength by memory id for memories of one namespace, in two queries."""
    if not memories:
        return {}
    records = track_record.records(namespace.pk, (m.agent_id for m in memories))
    ids = [m.pk for m in memories]
    conflicted = set()
    for source, target in MemoryLink.objects.filter(
            relation=MemoryLink.Relation.CONFLICTS_WITH).filter(
            Q(source_id__in=ids) | Q(target_id__in=ids)).values_list("source_id", "target_id"):
        conflicted.update((str(source), str(target)))
    half_life = half_life_days(namespace)
    now = now or timezone.now()
    return {str(m.pk): compute(m, record=records.get(m.agent_id),
                               conflicted=str(m.pk) in conflicted, half_life=half_life, now=now)
            for m in memories}


def _unit(value: float | None) -> float:
    return min(max(float(value if value is not None else 0.0), 0.0), 1.0)
