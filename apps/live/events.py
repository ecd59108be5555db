"""Publishing what happens to memories, once, after the commit, to the namespace's group.

The service layer calls these; consumers never poll. A message carries the rows (with
content) and the embeddings of created or updated memories, so every process can
match its standing queries in one vectorized step without asking the database or the
model again; deletions carry ids only (an erasure nothing else). Large writes are sent
in slices so no message grows past what a channel layer carries comfortably.

**Only when someone listens.** With the in-memory channel layer (the embedded default:
one process) the serving process's hubs (apps/live/hub.py) hold every subscription, so
an event for a namespace nobody watches is skipped: no rows or embeddings are copied,
nothing is handed to the event loop. The check is made when the write signals (to skip
building the message) and again at the commit (a subscriber that arrived meanwhile still
gets it). With Redis (several processes) a process cannot see the others' subscribers
without asking Redis, which costs what the publish costs; events are always published
there (docs/live.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
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
    def items() -> list[dict]:
        from apps.memories.representation import memory_row

        vectors = None if embeddings is None else [list(map(float, v)) for v in embeddings]
        return [{"id": str(m.pk), "row": memory_row(m),
                 "embedding": vectors[i] if vectors is not None else None}
                for i, m in enumerate(memories)]

    _after_commit(namespace, event, items, actor)


def memories_deleted(namespace, ids: Sequence[Any], actor, *, erasure: bool = False) -> None:
    """``deleted``: ids only; an erasure says so and carries nothing else."""
    _after_commit(namespace, "deleted", lambda: [{"id": str(i)} for i in ids], actor,
                  erasure=erasure)


def memories_recalled(namespace, ids: Sequence[Any], actor) -> None:
    if ids:
        _after_commit(namespace, "recalled", lambda: [{"id": str(i)} for i in ids], actor)


def timeline_node(namespace, change: str, node: dict, actor) -> None:
    """``timeline.node``: a rollup node was created, rebuilt or removed (its place in the
    tree, never its summary: a subscriber reads the node with its own access checked).
    Sent after the commit to the namespace's feed, whose watchers may read it."""
    base = {"type": "live.event", "event": "timeline.node", "namespace_id": namespace.pk,
            "namespace": namespace.slug, "actor": actor.label if actor else "",
            "agent_id": getattr(actor, "agent_id", ""), "erasure": False, "memories": [],
            "node": {**node, "change": change}}

    def publish() -> None:
        if may_listen(namespace.pk):
            send(namespace_group(namespace.pk), {**base, "at": timezone.now().isoformat()})

    transaction.on_commit(publish)


def control(group: str, action: str, **fields: Any) -> None:
    """A control message (a key revoked, a grant revoked) to the connections it concerns."""
    transaction.on_commit(lambda: send(group, {"type": "live.control", "action": action,
                                               **fields}))


def may_listen(namespace_id: int) -> bool:
    """False when this process knows an event for the namespace would reach nobody: live
    events are off, or the channel layer is in-memory, this process serves (its loop
    runs, so its layer holds every subscription) and no channel joined the namespace.
    True whenever it cannot know: Redis (other processes' subscribers), or a command
    whose events go to the embedded server beside it (which decides for itself)."""
    if not settings.MEMORYWEB_LIVE_EVENTS:
        return False
    layer = get_channel_layer()
    if layer is None:
        return False
    if not isinstance(layer, InMemoryChannelLayer):
        return True
    from apps.core.asgi import main_loop

    loop = main_loop()
    if loop is None or not loop.is_running():
        return True
    return _listening(namespace_group(namespace_id))


def _listening(group: str) -> bool:
    """Whether a channel of this process's in-memory layer has joined ``group``: the
    layer's own registry, so every reader counts (a connection's hub, or a test or tool
    reading the layer directly). Read from request threads while the loop changes it: a
    registry that changes under the read answers True."""
    groups = getattr(get_channel_layer(), "groups", None)
    if groups is None:
        return True
    try:
        return bool(groups.get(group))
    except RuntimeError:
        return True


def _after_commit(namespace, event: str, items: Callable[[], list[dict]], actor,
                  erasure: bool = False) -> None:
    base = {"type": "live.event", "event": event, "namespace_id": namespace.pk,
            "namespace": namespace.slug, "actor": actor.label if actor else "",
            "agent_id": getattr(actor, "agent_id", ""), "erasure": erasure}
    built = items() if may_listen(namespace.pk) else None  # the rows as the write left them

    def publish() -> None:
        found = built
        if found is None:
            if not may_listen(namespace.pk):
                return
            found = items()  # a subscriber arrived while the write committed
        at = timezone.now().isoformat()
        for start in range(0, len(found), SLICE):
            send(namespace_group(namespace.pk),
                 {**base, "at": at, "memories": found[start : start + SLICE]})

    transaction.on_commit(publish)


def send(group: str, message: dict) -> None:
    """group_send without waiting when a server loop runs (the request thread must not
    wait on subscribers), else synchronously (management commands, tests). An event that
    this process would deliver itself, on the in-memory layer, to a group none of its
    connections joined is dropped here (the server's own check for a command's event)."""
    if not settings.MEMORYWEB_LIVE_EVENTS:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    from apps.core.asgi import main_loop

    unheard = (message.get("type") == "live.event" and isinstance(layer, InMemoryChannelLayer)
               and not _listening(group))
    loop = main_loop()
    try:
        if loop is not None and loop.is_running():
            if unheard:
                return
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
            future.add_done_callback(_log_failure)
        elif _through_server(group, message):
            pass  # a command beside the embedded server: delivered by the server
        elif not unheard:
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
