"""Per-principal rate limits: each API key (or person) has its own budget.

DRF's SimpleRateThrottle with the principal's label as the cache key, so one busy
key never slows another. Over the limit: 429 with ``Retry-After``. Counts live in
Django's cache (per process by default; a shared cache such as Redis makes the limit
global across processes).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class PrincipalRateThrottle(SimpleRateThrottle):
    scope = "principal"

    def get_rate(self) -> str | None:
        # Read at request time (not import time), so the setting can change in tests.
        return settings.MEMORYWEB_RATE_LIMIT or None

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        label = getattr(request.user, "label", None)
        if not label:
            return None  # anonymous requests are refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": label}
