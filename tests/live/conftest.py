"""WebSocket tests: a fresh in-memory channel layer and hub registry per test; the
in-process ones (``usefixtures("close_sync_thread_connections")``) close the sync
thread's database connection after each test."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from apps.live import hub as hub_module


@pytest.fixture(autouse=True)
def fresh_layer():
    yield
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
    hub_module._hubs.clear()


@pytest_asyncio.fixture
async def close_sync_thread_connections():
    """The consumer's database work runs on asgiref's sync thread, which keeps its
    connection; close it so the test database can be dropped (PostgreSQL). Budgets and
    leases need no reset: each test's keys (and their labels) are new."""
    yield
    await sync_to_async(connections.close_all)()
