"""Live listens to the apps below it: a memory written, deleted or recalled
(apps/memories/changes.py), a timeline node built or removed (apps/timeline/changes.py),
a key or grant changed (apps/tenancy/changes.py), each turned into the event or control
message apps/live/events.py publishes after the commit. Connected in LiveConfig.ready."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from apps.live import events
from apps.memories import changes as memory_changes
from apps.tenancy import changes as tenancy_changes
from apps.timeline import changes as timeline_changes


@receiver(memory_changes.memories_written, dispatch_uid="live.memories_written")
def memories_written(*, event: str, namespace: Any, memories: Any, embeddings: Any, actor: Any,
                     **kwargs: Any) -> None:
    events.memories_changed(event, namespace, memories, embeddings, actor)


@receiver(memory_changes.memories_removed, dispatch_uid="live.memories_removed")
def memories_removed(*, namespace: Any, ids: Any, actor: Any, erasure: bool, **kwargs: Any) -> None:
    events.memories_deleted(namespace, ids, actor, erasure=erasure)


@receiver(memory_changes.memories_returned, dispatch_uid="live.memories_returned")
def memories_returned(*, namespace: Any, ids: Any, actor: Any, **kwargs: Any) -> None:
    events.memories_recalled(namespace, ids, actor)


@receiver(timeline_changes.node_changed, dispatch_uid="live.timeline_node_changed")
def timeline_node_changed(*, change: str, namespace: Any, node: Any, actor: Any,
                          **kwargs: Any) -> None:
    events.timeline_node(namespace, change, node, actor)


@receiver(tenancy_changes.key_changed, dispatch_uid="live.key_changed")
def key_changed(*, key_id: int, action: str, **kwargs: Any) -> None:
    events.control(events.key_group(key_id), action)


@receiver(tenancy_changes.grant_revoked, dispatch_uid="live.grant_revoked")
def grant_revoked(*, grant_id: int, **kwargs: Any) -> None:
    events.control(events.grant_group(grant_id), "grant_revoked")
