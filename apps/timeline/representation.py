"""A rollup node and a grip as every door shows them (REST, MCP, the live event), built by
hand like apps/memories/representation.py: no query beyond what the service loaded."""

from __future__ import annotations

from typing import Any

from apps.memories.representation import iso_datetime
from apps.timeline.models import Grip, RollupNode

NODE_FIELDS = ("id", "namespace", "level", "start", "end", "agent_id", "session_id", "summary",
               "source_count", "parent", "status", "summarizer", "built_at", "memory_id")
GRIP_FIELDS = ("id", "node", "part", "text", "excerpt", "memory_id", "occurred_at",
               "session_id")


def node_row(node: RollupNode) -> dict[str, Any]:
    return {
        "id": str(node.pk), "namespace": node.namespace.slug, "level": node.level,
        "start": iso_datetime(node.start), "end": iso_datetime(node.end),
        "agent_id": node.agent_id, "session_id": node.session_id, "summary": node.summary,
        "source_count": node.source_count,
        "parent": str(node.parent_id) if node.parent_id else None, "status": node.status,
        "summarizer": node.summarizer, "built_at": iso_datetime(node.built_at),
        "memory_id": str(node.memory_id) if node.memory_id else None,
    }


def node_event(node: RollupNode) -> dict[str, Any]:
    """What a live event says of a node: where it sits, never its summary (a subscriber
    who wants the text reads the node, with its own access checked)."""
    return {"id": str(node.pk), "level": node.level, "start": iso_datetime(node.start),
            "end": iso_datetime(node.end), "agent_id": node.agent_id,
            "session_id": node.session_id, "status": node.status,
            "source_count": node.source_count}


def grip_row(grip: Grip) -> dict[str, Any]:
    """A grip with its part's text and its source's time and session (``memory`` loaded)."""
    parts = grip.node.parts or []
    memory = grip.memory
    return {
        "id": str(grip.pk), "node": str(grip.node_id), "part": grip.part,
        "text": parts[grip.part] if grip.part < len(parts) else "",
        "excerpt": grip.excerpt, "memory_id": str(grip.memory_id),
        "occurred_at": iso_datetime(memory.occurred_at or memory.created_at),
        "session_id": memory.session_id,
    }
