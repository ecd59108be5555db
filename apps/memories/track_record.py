"""Agents' track records (``AgentRecord``): counted by the write path, read by strength.

A memory's strength (apps/memories/strength.py) includes its source agent's record: how
often the agent's memories were later corrected by someone else or deleted, against how
many it stored. The write path counts here in the write's own transaction. What is not
counted: writes by system jobs (``system:*``: retention, the timeline, the lifecycle),
whose deletes say nothing about the agent; erasures (a data subject's right, or a
forgetting of weak memories: counting those would weaken the agent's other memories and
feed the forgetting list itself); conversation events and summaries, which are captured
or derived rather than asserted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from apps.memories.models import AgentRecord

#: Kinds that are not an agent's assertion: not counted.
NOT_COUNTED_KINDS = frozenset({"event", "summary"})
FIELDS = ("stored", "corrected", "deleted")


def counts(actor: Any) -> bool:
    """Whether this actor's writes count toward agents' records (not a system job's)."""
    return not str(getattr(actor, "label", actor) or "").startswith("system:")


def by_agent(memories: Iterable[Any]) -> Counter[str]:
    """How many of these memories (rows, or ``(agent_id, kind)`` pairs) each agent wrote,
    leaving out events and summaries."""
    tally: Counter[str] = Counter()
    for memory in memories:
        agent_id, kind = memory if isinstance(memory, tuple) else (memory.agent_id, memory.kind)
        if agent_id and kind not in NOT_COUNTED_KINDS:
            tally[agent_id] += 1
    return tally


def add(namespace_id: int, tally: Mapping[str, int], field: str) -> None:
    """Add ``tally`` (agent -> n) to ``field`` of the namespace's records (created on first
    use), inside the caller's transaction."""
    if field not in FIELDS:
        raise ValueError(f"unknown track-record field {field!r}")
    for agent_id, n in sorted(tally.items()):
        if n <= 0:
            continue
        rows = AgentRecord.objects.filter(namespace_id=namespace_id, agent_id=agent_id)
        if rows.update(**{field: F(field) + n}):
            continue
        try:
            with transaction.atomic():
                AgentRecord.objects.create(namespace_id=namespace_id, agent_id=agent_id,
                                           **{field: n})
        except IntegrityError:  # created meanwhile by a concurrent write
            rows.update(**{field: F(field) + n})


def records(namespace_id: int, agent_ids: Iterable[str]) -> dict[str, AgentRecord]:
    """The records of these agents (agents without one are left out)."""
    wanted = sorted(set(agent_ids))
    return {r.agent_id: r for r in AgentRecord.objects.filter(
        namespace_id=namespace_id, agent_id__in=wanted)}
