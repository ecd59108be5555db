"""``fresh_key_cache``: a test of the gateway's fail-open admission or the key cache starts
and ends with nothing remembered and the database breaker closed (both are per process,
so one test's outage must not reach the next)."""

from __future__ import annotations

import pytest

from apps.tenancy import key_cache


@pytest.fixture
def fresh_key_cache(settings):
    settings.MEMORYWEB_KEY_CACHE_SECONDS = 60
    key_cache.clear()
    key_cache.breaker.reset()
    yield
    key_cache.clear()
    key_cache.breaker.reset()

