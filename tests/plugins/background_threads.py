"""``no_autonomous_threads`` (every test): the threads a server starts to read the
database on their own schedule (``apps.core.background.AUTONOMOUS_THREADS``: the key
cache's sweep, the keyword indexes' warming) never start inside a test process. Such a
thread would read the test database on a second connection while a test holds its
transaction; with SQLite's shared in-memory cache that fails the test's own write
("database table is locked"). Tests call ``key_cache.sweep()`` and
``keyword_index_log.indexes().build()`` themselves, or turn it on for one test; servers
the tests start (Daphne) run the threads as in production."""

from __future__ import annotations

import pytest

from apps.core import background


@pytest.fixture(scope="session", autouse=True)
def no_autonomous_threads():
    background.AUTONOMOUS_THREADS = False
