"""Publishing what happens to memories, once, after the commit, to the namespace's group.

The service layer calls these; consumers never poll. A message carries the rows (with
content) and the embeddings of created or updated memories, so every process can
match its standing queries in one vectorized step without asking the database or the
model again; deletions carry ids only (an erasure nothing else). Large writes are sent
in slices so no message grows past what a channel layer carries comfortably.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)
SLICE = 50


def namespace_group(namespace_id: int) -> str:
    return f"live.ns.{int(namespace_id)}"


def key_group(key_id: int) -> str:
    return f"live.key.{int(key_id)}"


def grant_group(grant_id: int) -> str:
    return f"live.grant.{int(grant_id)}"


def memories_changed(event: str, namespace, memories: Sequence[Any], embeddings, actor) -> None:
    """``created`` or ``updated``: rows and embeddings, sent after the commit."""
    from apps.memories.representation import memory_row

    vectors = None if embeddings is None else [list(map(float, v)) for v in embeddings]
    items = [{"id": str(m.pk), "row": memory_row(m),
              "embedding": vectors[i] if vectors is not None else None}
             for i, m in enumerate(memories)]
    _after_commit(namespace, event, items, actor)


def memories_deleted(namespace, ids: Sequence[Any], actor, *, erasure: bool = False) -> None:
    """``deleted``: ids only; an erasure says so and carries nothing else."""
    _after_commit(namespace, "deleted", [{"id": str(i)} for i in ids], actor, erasure=erasure)


def memories_recalled(namespace, ids: Sequence[Any], actor) -> None:
    if ids:
        _after_commit(namespace, "recalled", [{"id": str(i)} for i in ids], actor)


def control(group: str, action: str, **fields: Any) -> None:
    """A control message (a key revoked, a grant revoked) to the connections it concerns."""
    transaction.on_commit(lambda: send(group, {"type": "live.control", "action": action,
                                               **fields}))


def _after_commit(namespace, event: str, items: list[dict], actor, erasure: bool = False) -> None:
    base = {"type": "live.event", "event": event, "namespace_id": namespace.pk,
            "namespace": namespace.slug, "actor": actor.label if actor else "",
            "agent_id": getattr(actor, "agent_id", ""), "erasure": erasure}

    def publish() -> None:
        at = timezone.now().isoformat()
        for start in range(0, len(items), SLICE):
            send(namespace_group(namespace.pk),
                 {**base, "at": at, "memories": items[start : start + SLICE]})

    transaction.on_commit(publish)


def send(group: str, message: dict) -> None:
    """group_send without waiting when a server loop runs (the request thread must not
    wait on subscribers), else synchronously (management commands, tests)."""
    if not settings.MEMORYWEB_LIVE_EVENTS:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    from apps.core.asgi import main_loop

    loop = main_loop()
    try:
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
            future.add_done_callback(_log_failure)
        elif _through_server(group, message):
            pass  # a command beside the embedded server: delivered by the server
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception as exc:  # live delivery never fails a write
        log.warning("live event to %s not sent: %s", group, exc)


def _through_server(group: str, message: dict) -> bool:
    """A command's event, handed to the embedded server running beside it: the in-memory
    channel layer is per process, so only the server's own reaches its WebSocket feeds
    (apps/server/control.py). False when there is no such server (scaled: Redis carries it)."""
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "channels.layers.InMemoryChannelLayer":
        return False
    from apps.ops.control_client import send_live_event

    return send_live_event(group, message)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("live event not sent: %s", future.exception())
