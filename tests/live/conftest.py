"""WebSocket tests: a fresh in-memory channel layer and hub registry per test."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.live import hub as hub_module


@pytest.fixture(autouse=True)
def fresh_layer():
    yield
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
    hub_module._hubs.clear()
