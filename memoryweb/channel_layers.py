"""The Redis channel layer's configuration (scaled mode: REDIS_URL set), built in one place
for settings.py and the tests that run a Redis layer in-process.

A connection waits for its next message in channels_redis's BZPOPMIN, which blocks 5 s
on the server; redis-py 8 stops reading after its default socket timeout, also 5 s. A
reply a moment late (a loaded machine, a remote Redis) raised TimeoutError inside the
consumer and Daphne closed the WebSocket with 1011 (docs/live.md). Reads here wait
longer than the block; a Redis that stops answering still fails them, after
:data:`SOCKET_TIMEOUT` seconds.
"""

from __future__ import annotations

from typing import Any

SOCKET_TIMEOUT = 15.0


def redis_channel_layers(url: str, prefix: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for channels_redis on ``url``, its keys under ``prefix``."""
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {
        "hosts": [{"address": url, "socket_timeout": SOCKET_TIMEOUT}], "prefix": prefix}}}
