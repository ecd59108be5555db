"""Standing queries, matched against new memories in one vectorized step per event.

A process keeps, per namespace, the unit query vectors of every local subscription
that watches it as one matrix. An event brings the new memories' embeddings; one
matrix product scores every (subscription, memory) pair, and only pairs over their
minimum score are then checked against filters and grant scope in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class Subscription:
    owner: Any  # the connection that pushes matches
    sub_id: str
    vector: np.ndarray  # unit query embedding
    min_score: float
    filters: Mapping[str, Any]
    #: namespace id -> scope check for that namespace's memories (None: own namespace).
    scopes: dict[int, Callable[[dict], bool] | None] = field(default_factory=dict)


class SubscriptionIndex:
    """The subscriptions watching one namespace, with their vectors stacked."""

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self._matrix: np.ndarray | None = None

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)
        self._matrix = None

    def remove(self, predicate: Callable[[Subscription], bool]) -> None:
        self.subscriptions = [s for s in self.subscriptions if not predicate(s)]
        self._matrix = None

    def __len__(self) -> int:
        return len(self.subscriptions)

    def matches(self, namespace_id: int, items: list[dict]) -> list[tuple[Subscription, dict, float]]:
        """(subscription, item, score) for every pair over the subscription's minimum."""
        scored = [item for item in items if item.get("embedding")]
        if not scored or not self.subscriptions:
            return []
        if self._matrix is None:
            self._matrix = np.stack([s.vector for s in self.subscriptions])
        memories = np.asarray([item["embedding"] for item in scored], dtype=np.float32)
        scores = self._matrix @ memories.T  # unit vectors: cosine similarity
        found = []
        for i, j in zip(*np.nonzero(scores >= np.array([[s.min_score] for s in
                                                        self.subscriptions])), strict=True):
            subscription, item = self.subscriptions[i], scored[j]
            scope = subscription.scopes.get(namespace_id)
            if matches_filters(item["row"], subscription.filters) and (scope is None
                                                                      or scope(item["row"])):
                found.append((subscription, item, float(scores[i, j])))
        return found


def _moment(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def matches_filters(row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """The recall filters' meaning (recall.channels._where / _filtered) applied to one row."""
    for name in ("agent_id", "session_id", "kind"):
        if filters.get(name) and row.get(name) != filters[name]:
            return False
    if any(tag not in (row.get("tags") or []) for tag in filters.get("tags") or []):
        return False
    created = _moment(row.get("created_at"))
    event = _moment(row.get("occurred_at")) or created
    for bound, value, later in (("created_after", created, True),
                                ("created_before", created, False),
                                ("occurred_after", event, True),
                                ("occurred_before", event, False)):
        limit = filters.get(bound)
        if limit is not None and value is not None and ((value < limit) if later
                                                        else (value >= limit)):
            return False
    metadata = row.get("metadata") or {}
    return all(metadata.get(key) == value for key, value in (filters.get("metadata") or {}).items())
