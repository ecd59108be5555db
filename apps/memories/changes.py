"""Signals the memory write path sends when memories are created, updated, deleted or
recalled, for whoever must react (the live WebSocket feeds, apps/live/receivers.py).

Memories sits below live, so it announces and live listens. Each signal is sent inside
the write's transaction, with the rows as written; a receiver that publishes defers to
the commit (``transaction.on_commit``), so a rolled-back write announces nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.dispatch import Signal

#: ``event`` ("created" or "updated"), ``namespace``, ``memories``, ``embeddings`` (an
#: array aligned with ``memories``, or None), ``actor``.
memories_written = Signal()
#: ``namespace``, ``ids``, ``actor``, ``erasure`` (True when an erasure deleted them).
memories_removed = Signal()
#: ``namespace``, ``ids`` (the namespace's own memories a recall returned), ``actor``.
memories_returned = Signal()


def memories_changed(event: str, namespace: Any, memories: Sequence[Any], embeddings: Any,
                     actor: Any) -> None:
    memories_written.send(sender=None, event=event, namespace=namespace, memories=memories,
                          embeddings=embeddings, actor=actor)


def memories_deleted(namespace: Any, ids: Sequence[Any], actor: Any, *, erasure: bool = False) -> None:
    memories_removed.send(sender=None, namespace=namespace, ids=ids, actor=actor,
                                 erasure=erasure)


def memories_recalled(namespace: Any, ids: Sequence[Any], actor: Any) -> None:
    memories_returned.send(sender=None, namespace=namespace, ids=ids, actor=actor)
