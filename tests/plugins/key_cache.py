"""``fresh_key_cache``: a test of the gateway's fail-open admission or the key cache starts
and ends with nothing remembered and the database breaker closed (both are per process,
so one test's outage must not reach the next).

``no_sweep_thread`` (every test): the sweep thread the gateway starts at its first keyed
request never starts inside a test process. It would read the test database on a second
connection while a test holds its transaction; with SQLite's shared in-memory cache that
fails the test's own write ("database table is locked"). Tests call ``key_cache.sweep()``
themselves; servers the tests start (Daphne) run the thread as in production. The same
goes for the keyword indexes' warming thread (``MEMORYWEB_KEYWORD_ENGINE=auto``)."""

from __future__ import annotations

import os

import pytest

from apps.memories import keyword_index_log
from apps.tenancy import key_cache


@pytest.fixture
def fresh_key_cache(settings):
    settings.MEMORYWEB_KEY_CACHE_SECONDS = 60
    key_cache.clear()
    key_cache.breaker.reset()
    yield
    key_cache.clear()
    key_cache.breaker.reset()


@pytest.fixture(scope="session", autouse=True)
def no_sweep_thread():
    key_cache._sweeping_pid = os.getpid()  # keep_fresh() then takes it as already running
    # The same for the keyword indexes' warming thread (MEMORYWEB_KEYWORD_ENGINE=auto):
    # tests build with ``indexes().build()``.
    keyword_index_log.WARM_IN_BACKGROUND = False
