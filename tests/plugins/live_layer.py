"""Fixtures for tests that talk to the live layer in process (tests/live, the timeline's
WebSocket test): a fresh in-memory channel layer and hub registry, and the sync threads'
database connections closed after the test."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import async_to_sync, sync_to_async


@pytest.fixture
def fresh_layer():
    """The channel layer flushed and the hub registry emptied after the test."""
    from channels.layers import get_channel_layer  # Django is set up by now

    from apps.live import hub as hub_module

    yield
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
    hub_module._hubs.clear()


@pytest_asyncio.fixture
async def close_sync_thread_connections():
    """The consumer's (and the MCP tools') database work runs on worker threads that keep
    their connections; close them so the test database can be dropped (PostgreSQL).
    Budgets and leases need no reset: each test's keys (and their labels) are new."""
    from django.db import connections

    yield
    await sync_to_async(connections.close_all)()
