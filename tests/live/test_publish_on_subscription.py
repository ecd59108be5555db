"""Events are published only when someone subscribes (issue 19, item 4).

With the in-memory channel layer (the embedded default, one process) the serving
process's hubs know every subscription: no watcher or standing query on a namespace, no
``group_send`` for its writes and recalls; one, and the events come. With Redis (several
processes) a process cannot see the others' subscribers, so it keeps publishing.
``group_send`` is counted by wrapping the channel layer's own method; this test's event
loop is bound as the server's (what Daphne's loop is once it has served a request).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import pytest_asyncio
from channels.layers import get_channel_layer
from websockets.sync.client import connect as ws_connect

from apps.core import asgi as core_asgi
from apps.live.events import namespace_group
from memoryweb.channel_layers import redis_channel_layers
from tests.helpers.embedded import REDIS_URL, manage_commands, migrate
from tests.helpers.websocket import TIMEOUT, ask, connect, rest
from tests.servers import DaphneServer

FACT = {"content": "The deploy window opens at nine on Tuesdays."}
QUERY = {"query": "when does the deploy window open?", "k": 1}


@pytest_asyncio.fixture
async def serving(monkeypatch):
    """This test's loop serves: events from request threads are handed to it."""
    monkeypatch.setattr(core_asgi, "_main_loop", None)
    core_asgi.bind_main_loop()
    yield


@pytest.fixture
def sends(monkeypatch) -> list[tuple[str, str]]:
    """(group, event) of every group_send on the channel layer, in order."""
    layer = get_channel_layer()
    calls: list[tuple[str, str]] = []
    real = layer.group_send

    async def counting(group: str, message: dict) -> None:
        calls.append((group, message.get("event") or message.get("action")))
        await real(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    return calls


async def _settled() -> None:
    """Let the loop run whatever the request threads handed it."""
    for _ in range(5):
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_sync_thread_connections", "serving")
async def test_without_a_subscriber_nothing_is_published(agent, sends):
    assert (await rest(agent, "post", "/api/v1/memories", FACT)).status_code == 201
    recalled = await rest(agent, "post", "/api/v1/recall", QUERY)
    assert recalled.status_code == 200 and recalled.json()["results"]
    await _settled()
    assert sends == []


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_sync_thread_connections", "serving")
async def test_a_watcher_gets_the_events_until_it_leaves(alpha, agent, sends):
    socket = await connect(agent)
    assert (await ask(socket, {"type": "events", "id": "e1"}))["type"] == "watching"
    stored = await rest(agent, "post", "/api/v1/memories", FACT)
    created = await socket.receive_json_from(timeout=TIMEOUT)
    assert created["event"] == "created" and created["memories"][0]["id"] == stored.json()["id"]
    assert (await rest(agent, "post", "/api/v1/recall", QUERY)).status_code == 200
    recalled = await socket.receive_json_from(timeout=TIMEOUT)
    assert recalled["event"] == "recalled" and recalled["memories"] == [{"id": stored.json()["id"]}]
    group = namespace_group(alpha.pk)
    assert sends == [(group, "created"), (group, "recalled")]
    await socket.disconnect()
    sends.clear()
    assert (await rest(agent, "post", "/api/v1/recall", QUERY)).status_code == 200
    await _settled()
    assert sends == []  # the last subscriber left


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_sync_thread_connections", "serving")
async def test_a_standing_query_is_a_subscriber_too(alpha, agent, sends):
    socket = await connect(agent)
    subscribed = await ask(socket, {"type": "subscribe", "id": "s1",
                                    "query": "deploy window", "min_score": 0.3})
    assert subscribed["type"] == "subscribed"
    stored = await rest(agent, "post", "/api/v1/memories", FACT)
    match = await socket.receive_json_from(timeout=TIMEOUT)
    assert match["type"] == "match" and match["memory"]["id"] == stored.json()["id"]
    assert sends == [(namespace_group(alpha.pk), "created")]
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_sync_thread_connections", "serving")
async def test_with_redis_events_are_published_without_a_subscriber(alpha, agent, settings,
                                                                    redis_prefix, monkeypatch):
    """Scaled mode: other processes' subscribers are unknown here, so every event goes out."""
    settings.CHANNEL_LAYERS = redis_channel_layers(REDIS_URL, redis_prefix)
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    calls: list[str] = []
    real = layer.group_send

    async def counting(group: str, message: dict) -> None:
        calls.append(message["event"])
        await real(group, message)

    monkeypatch.setattr(layer, "group_send", counting)
    try:
        assert (await rest(agent, "post", "/api/v1/memories", FACT)).status_code == 201
        assert (await rest(agent, "post", "/api/v1/recall", QUERY)).status_code == 200
        for _ in range(50):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.05)
        assert calls == ["created", "recalled"]
    finally:
        await layer.flush()
        await layer.close_pools()


def test_a_watcher_over_a_real_daphne_gets_recall_events(embedded_env, tmp_path):
    """End to end on the embedded default: REST calls with a key (the lean path) publish
    to the feed of a WebSocket watcher in the same server."""
    migrate(embedded_env)
    _, created = manage_commands(embedded_env, ["create_namespace", "demo"],
                                 ["create_api_key", "--namespace", "demo", "--role", "agent",
                                  "--agent-id", "bot"])
    key = created.splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        rest_call = httpx.Client(base_url=server.url, headers=headers, timeout=60)
        stored = rest_call.post("/api/v1/memories", json=FACT).json()  # nobody listens yet
        assert rest_call.post("/api/v1/recall", json=QUERY).json()["results"][0]["id"] == stored["id"]
        with ws_connect(server.url.replace("http", "ws") + "/ws/v1/live", open_timeout=10,
                        additional_headers=headers) as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "ready"
            socket.send(json.dumps({"type": "events", "id": "e1"}))
            assert json.loads(socket.recv(timeout=10))["type"] == "watching"
            assert rest_call.post("/api/v1/recall", json=QUERY).status_code == 200
            event = json.loads(socket.recv(timeout=10))
            assert event["type"] == "event" and event["event"] == "recalled"
            assert event["memories"] == [{"id": stored["id"]}]
