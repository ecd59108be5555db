"""One rate budget per principal, drawn from by every door; caps on open connections.

**The budget** (``MEMORYWEB_RATE_LIMIT``, e.g. ``6000/min``): every request a principal
(an API key, or a person) makes through any door draws from one budget: REST and the
drop-in routes (the DRF throttle, apps/tenancy/throttling.py), each MCP ``tools/call``
(apps/mcp/http.py) and each WebSocket request message (apps/live/consumers.py). Before,
only DRF counted, so a key refused on REST went on storing through MCP and the socket.

It is a sliding-window counter: a count per fixed window in Django's cache, and the
estimate ``previous window * (the part of it still inside the sliding window) + this
window``. ``cache.incr`` is atomic in every backend we use (a lock in the in-process
cache, INCR in Redis), so concurrent requests, threads or processes (with Redis) never
both take the last unit; a refused request gives its unit back. Counts are per process
with the in-process cache (the embedded server is one process) and global with Redis.

**Leases** cap what stays open per principal (WebSocket connections): ``limit`` slots
per principal, each a cache entry taken with ``cache.add`` (atomic: SET NX in Redis) and
holding a random token. A connection takes a free slot, renews it while it lives and
deletes it when it ends; a slot of a process that crashed expires on its own
(``LEASE_SECONDS``), so the cap heals without anyone cleaning up.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from apps.core.conf import parse_rate  # one parser: the system checks use it too

#: How long a lease outlives its last renewal: a crashed process's connections stop
#: counting after at most this long. Holders renew every ``LEASE_SECONDS / 4``.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    #: Seconds until a request of the same cost would be allowed (0 when allowed).
    retry_after: float = 0.0
    #: The configured rate, for messages ("20/min"); empty when unlimited.
    rate: str = ""

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds for ``Retry-After`` (at least 1 when refused)."""
        return max(1, math.ceil(self.retry_after)) if not self.allowed else 0


def _counter(label: str, window: int, index: int) -> str:
    return f"mw:budget:{window}:{label}:{index}"


def draw(label: str, cost: int = 1, *, now: float | None = None) -> Verdict:
    """Take ``cost`` units from ``label``'s budget, or refuse (taking nothing)."""
    text = settings.MEMORYWEB_RATE_LIMIT
    parsed = parse_rate(text)
    if parsed is None or cost <= 0:
        return Verdict(True)
    limit, window = parsed
    now = time.time() if now is None else now
    index, elapsed = divmod(now, window)
    index = int(index)
    key = _counter(label, window, index)
    # Two windows: this one is read as the previous one during the next.
    cache.add(key, 0, timeout=2 * window + 5)
    try:
        used = cache.incr(key, cost)
    except ValueError:  # expired between add and incr (only on a window's very edge)
        cache.add(key, 0, timeout=2 * window + 5)
        used = cache.incr(key, cost)
    previous = cache.get(_counter(label, window, index - 1), 0)
    carried = previous * (1 - elapsed / window)
    if carried + used <= limit:
        return Verdict(True, rate=text)
    cache.decr(key, cost)  # a refused request takes nothing
    return Verdict(False, _wait(limit, window, elapsed, used - cost, previous, cost), text)


def _wait(limit: int, window: int, elapsed: float, used: int, previous: int,
          cost: int) -> float:
    """Seconds until ``carried + used + cost <= limit`` as the previous window fades."""
    if cost > limit:
        return float(window)  # never fits; say "a window" rather than forever
    if used + cost <= limit and previous:
        # Within this window, once enough of the previous one has slid out.
        fraction = 1 - (limit - used - cost) / previous
        return max(fraction * window - elapsed, 0.0)
    # Next window: this one's count becomes the fading previous one.
    fraction = 1 - (limit - cost) / used if used else 0.0
    return (window - elapsed) + max(fraction, 0.0) * window


# --- leases (caps on open connections) --------------------------------------------------

class Lease:
    """One slot of a principal's cap, held by one open connection."""

    def __init__(self, key: str, token: str) -> None:
        self.key = key
        self.token = token

    def renew(self) -> None:
        """Keep the slot (call every ``LEASE_SECONDS / 4`` or so). If it expired (the
        process stalled), take it again when still free."""
        if cache.get(self.key) == self.token:
            cache.touch(self.key, LEASE_SECONDS)
        else:
            cache.add(self.key, self.token, LEASE_SECONDS)

    def release(self) -> None:
        """Free the slot, if it is still this lease's."""
        if cache.get(self.key) == self.token:
            cache.delete(self.key)


def acquire(kind: str, label: str, limit: int) -> Lease | None:
    """A free slot among ``label``'s ``limit`` slots of ``kind``, or None (cap reached)."""
    token = secrets.token_hex(8)
    start = random.randrange(limit)  # concurrent connects try different slots first
    for offset in range(limit):
        key = f"mw:lease:{kind}:{label}:{(start + offset) % limit}"
        if cache.add(key, token, LEASE_SECONDS):
            return Lease(key, token)
    return None
