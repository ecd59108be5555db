"""One hub per server process (per event loop): the process's single member of the
channel-layer groups its connections care about.

Each event therefore arrives once per process, not once per connection, and is fanned
out here: to event-feed watchers of the namespace, and to standing queries through one
vectorized match (matching.py). Delivery to a connection never waits: it goes into the
connection's bounded send queue, and a connection whose queue is full is dropped as a
slow consumer (consumers.py), so one slow client never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from channels.layers import get_channel_layer

from apps.live.events import namespace_group
from apps.live.matching import Subscription, SubscriptionIndex

log = logging.getLogger(__name__)
_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    """The running loop's hub (tests run several loops; a server runs one)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(id(loop))
    if found is None or found.loop is not loop:
        found = _hubs[id(loop)] = Hub(loop)
    return found


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.groups: Counter[str] = Counter()
        self.watchers: dict[int, set[Any]] = {}  # namespace id -> event-feed connections
        self.indexes: dict[int, SubscriptionIndex] = {}  # namespace id -> standing queries
        self._task: asyncio.Task | None = None

    async def _ensure_started(self) -> None:
        if self.channel is None:
            # The default prefix, as every consumer's channel: channels_redis lets one
            # receive at a time pop the process's channel named up to the "!", and a
            # prefix of our own was a second such channel, never popped while a
            # connection waited on the first (events stopped reaching this process).
            self.channel = await self.layer.new_channel()
            self._task = asyncio.create_task(self._receive_forever())

    async def _join(self, group: str) -> None:
        await self._ensure_started()
        if self.groups[group] == 0:
            await self.layer.group_add(group, self.channel)
        self.groups[group] += 1

    async def _leave(self, group: str) -> None:
        self.groups[group] -= 1
        if self.groups[group] <= 0:
            del self.groups[group]
            await self.layer.group_discard(group, self.channel)

    # --- registrations ----------------------------------------------------------------

    async def watch(self, connection: Any, namespace_id: int) -> None:
        self.watchers.setdefault(namespace_id, set()).add(connection)
        await self._join(namespace_group(namespace_id))

    async def subscribe(self, subscription: Subscription) -> None:
        for namespace_id in subscription.scopes:
            self.indexes.setdefault(namespace_id, SubscriptionIndex()).add(subscription)
            await self._join(namespace_group(namespace_id))

    async def unsubscribe(self, connection: Any, sub_id: str | None = None) -> int:
        """Drop a connection's subscription (or all of them); returns how many went."""
        removed = 0
        for namespace_id, index in list(self.indexes.items()):
            before = len(index)
            index.remove(lambda s: s.owner is connection and (sub_id is None or s.sub_id == sub_id))
            for _ in range(before - len(index)):
                removed += 1
                await self._leave(namespace_group(namespace_id))
        return removed

    async def forget(self, connection: Any) -> None:
        """A connection closed: remove everything it registered."""
        await self.unsubscribe(connection)
        for namespace_id, watchers in list(self.watchers.items()):
            if connection in watchers:
                watchers.discard(connection)
                await self._leave(namespace_group(namespace_id))

    async def drop_scope(self, connection: Any, namespace_id: int) -> None:
        """A grant went: the connection's subscriptions stop watching that namespace."""
        index = self.indexes.get(namespace_id)
        if index is None:
            return
        mine = [s for s in index.subscriptions if s.owner is connection]
        index.remove(lambda s: s.owner is connection)
        for subscription in mine:
            subscription.scopes.pop(namespace_id, None)
            await self._leave(namespace_group(namespace_id))

    # --- delivery ---------------------------------------------------------------------

    async def _receive_forever(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
                self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad message must not stop live delivery
                log.exception("live hub: message dropped")

    def dispatch(self, message: dict) -> None:
        if message.get("type") != "live.event":
            return
        namespace_id = message["namespace_id"]
        for connection in list(self.watchers.get(namespace_id, ())):
            connection.offer_event(message)
        index = self.indexes.get(namespace_id)
        if index and message["event"] in ("created", "updated"):
            for subscription, item, score in index.matches(namespace_id, message["memories"]):
                subscription.owner.offer_match(subscription, item, score, message)
