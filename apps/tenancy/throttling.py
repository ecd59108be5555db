"""Per-principal rate limits on REST and the drop-in routes: each API key (or person)
has its own budget, shared with the MCP and WebSocket doors (apps/tenancy/budget.py).

Over the limit: 429 ``throttled`` with ``Retry-After``. One busy key never slows
another. Counts live in Django's cache (per process by default; Redis makes the limit
global across processes).
"""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle

from apps.tenancy import budget


class PrincipalRateThrottle(BaseThrottle):
    """A DRF throttle over the one budget (``MEMORYWEB_RATE_LIMIT``, read per request)."""

    def allow_request(self, request, view) -> bool:
        self.verdict = None
        label = getattr(request.user, "label", None)
        if not label:
            return True  # anonymous requests are refused by authentication anyway
        self.verdict = budget.draw(label)
        return self.verdict.allowed

    def wait(self) -> float | None:
        return self.verdict.retry_after_seconds if self.verdict is not None else None
