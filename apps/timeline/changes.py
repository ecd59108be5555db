"""The signal timeline sends when a rollup node is created, rebuilt or removed, for whoever
must react (the live WebSocket feed, apps/live/receivers.py). Timeline sits below live,
so it announces and live listens, as memories does (apps/memories/changes.py). Sent
inside the node's transaction; a receiver that publishes defers to the commit.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

#: ``change`` ("created", "updated" or "removed"), ``namespace``, ``node`` (a dict: id,
#: level, start, end, agent_id, session_id, status, source_count — never the summary),
#: ``actor``.
node_changed = Signal()


def announce(change: str, namespace: Any, node: dict[str, Any], actor: Any) -> None:
    node_changed.send(sender=None, change=change, namespace=namespace, node=node, actor=actor)
