"""WebSocket tests: a fresh in-memory channel layer and hub registry per test; the
in-process ones (``usefixtures("close_sync_thread_connections")``) close the sync
thread's database connection after each test. Both fixtures: tests/plugins/live_layer.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_layer_for_every_test(fresh_layer):
    yield
