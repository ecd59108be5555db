"""The Redis channel layer: as the settings build it, over a slow link; and shared by a
process's hub and its connections.

channels_redis waits for a connection's next message in a BZPOPMIN that blocks 5 s on
the server; redis-py 8 stops reading after its default socket timeout, also 5 s. A reply
a moment late (a loaded machine, a remote Redis) then raised TimeoutError inside the
consumer and Daphne closed the WebSocket with 1011 (seen in CI, 2026-12-07). Here every
reply from Redis is held back half a second: the idle receive must keep waiting.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from channels.layers import get_channel_layer

from apps.live.hub import Hub
from memoryweb.channel_layers import redis_channel_layers
from tests.helpers.embedded import REDIS_URL, embedded_environment
from tests.servers import ROOT, TcpProxy

#: Waits 8 s for a message that never comes, through the settings' channel layer, and
#: says which error ended the wait: asyncio's own (its wait ran out) or Redis's.
_IDLE_RECEIVE = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel("idle.")
    try:
        await asyncio.wait_for(layer.receive(channel), 8)
    except Exception as exc:
        print("ENDED", type(exc).__module__, type(exc).__name__)

asyncio.run(main())
"""


def test_an_idle_receive_outlasts_the_blocking_pop_over_a_slow_link(tmp_path, redis_prefix):
    target = urlsplit(REDIS_URL)
    proxy = TcpProxy((target.hostname, target.port or 6379), latency=0.5)
    proxy.start()
    try:
        env = embedded_environment(
            tmp_path / "data", REDIS_URL=f"redis://127.0.0.1:{proxy.port}{target.path}",
            MEMORYWEB_CHANNEL_PREFIX=redis_prefix)
        result = subprocess.run([sys.executable, "-c", _IDLE_RECEIVE], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ENDED builtins TimeoutError" in result.stdout, (result.stdout, result.stderr[-3000:])


@pytest.mark.asyncio
async def test_the_hub_receives_while_a_connection_waits_on_the_same_layer(settings, redis_prefix):
    """channels_redis lets one receive at a time pop a process's channel (the name up to
    its "!"); the others wait for that receive to hand them their messages. A hub whose
    channel had a prefix of its own was a second such channel: while a connection held
    the process's receive, events for the hub were never popped."""
    settings.CHANNEL_LAYERS = redis_channel_layers(REDIS_URL, redis_prefix)
    layer = get_channel_layer()
    connection = await layer.new_channel()  # what Channels gives a consumer
    waiting = asyncio.ensure_future(layer.receive(connection))
    await asyncio.sleep(0.2)  # the connection now holds the process's receive
    hub = Hub(asyncio.get_running_loop())
    dispatched: list[dict] = []
    hub.dispatch = dispatched.append
    try:
        await hub._join("live.ns.test")
        await layer.group_send("live.ns.test", {"type": "live.event", "n": 1})
        for _ in range(60):
            if dispatched:
                break
            await asyncio.sleep(0.05)
        assert [message["n"] for message in dispatched] == [1]
        await layer.send(connection, {"type": "live.control", "n": 2})
        assert (await asyncio.wait_for(waiting, 3))["n"] == 2
    finally:
        for task in (waiting, hub._task):
            if task is not None:
                task.cancel()
        await layer.flush()
        await layer.close_pools()
