"""/ws/v1/live in-process: keys that expire while connected, the shared rate budget, the
cap on connections per key, and messages nested too deeply.

Real ASGI application, real database and cache; the over-the-wire behaviours (close
codes a real server sends, budgets across doors and processes) are in
tests/live/test_limits_daphne.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from apps.core.roles import Role
from apps.live.consumers import LIMITS
from apps.memories.models import Memory
from apps.tenancy.models import ApiKey
from tests.helpers.callers import make_caller
from tests.helpers.websocket import ask, closed_with, connect, rest, session_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("close_sync_thread_connections")]
#: Generous: only how long a test may wait for something that must happen.
EXPIRY_TIMEOUT = 20


async def expect_close(socket, timeout: float = EXPIRY_TIMEOUT) -> int:
    """The close code, skipping any messages before it."""
    while True:
        output = await socket.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_rotating_with_a_grace_period_closes_4403_when_the_grace_ends(agent, team_admin):
    socket = await connect(agent)
    rotated = await rest(team_admin, "post",
                         f"/api/v1/namespaces/alpha/keys/{agent.key.pk}/rotate",
                         {"grace_seconds": 2})
    assert rotated.status_code == 201
    # The old key works during the grace period: the socket is open and answers.
    assert await ask(socket, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
    assert await expect_close(socket) == 4403


async def test_a_key_patched_to_expire_soon_closes_4403_at_its_expiry(agent, team_admin):
    socket = await connect(agent)
    soon = (timezone.now() + dt.timedelta(seconds=2)).isoformat()
    patched = await rest(team_admin, "patch", f"/api/v1/namespaces/alpha/keys/{agent.key.pk}",
                         {"expires_at": soon})
    assert patched.status_code == 200, patched.content
    assert await ask(socket, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
    assert await expect_close(socket) == 4403


async def test_a_key_that_expires_later_is_still_rechecked(monkeypatch, alpha):
    """A key with a distant expiry: the periodic recheck survives it and still notices
    the key is gone (here revoked without the control message a revocation sends)."""
    monkeypatch.setitem(LIMITS, "recheck_seconds", 0.2)
    caller = await sync_to_async(make_caller)(Role.AGENT, alpha, "later")
    await sync_to_async(ApiKey.objects.filter(pk=caller.key.pk).update)(
        expires_at=timezone.now() + dt.timedelta(days=30))
    socket = await connect(caller)
    # A few rechecks pass (each one used to crash the task that runs them) ...
    assert await socket.receive_nothing(timeout=1)
    assert await ask(socket, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
    # ... and the next one still runs.
    await sync_to_async(ApiKey.objects.filter(pk=caller.key.pk).update)(revoked_at=timezone.now())
    assert await expect_close(socket) == 4403


async def test_a_message_nested_too_deeply_gets_a_parse_error_and_a_close(agent):
    socket = await connect(agent)
    await socket.send_to(text_data='{"type": "ingest", "content": "x", "metadata": '
                         + "[" * 5000 + "]" * 5000 + "}")
    error = await socket.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["error"]["code"] == "parse_error"
    assert "nested deeper than 64" in error["error"]["message"]
    assert await closed_with(socket) == 4400
    assert not await sync_to_async(Memory.objects.exists)()


async def test_every_door_draws_from_one_budget(settings, agent, reader):
    settings.MEMORYWEB_RATE_LIMIT = "3/min"
    socket = await connect(agent)
    for i in range(2):
        reply = await ask(socket, {"type": "ingest", "id": f"i{i}", "content": f"fact {i}"})
        assert reply["type"] == "ingested"
    assert (await rest(agent, "get", "/api/v1/memories")).status_code == 200  # the third
    refused = await ask(socket, {"type": "ingest", "id": "over", "content": "one too many"})
    assert refused["type"] == "error" and refused["id"] == "over"
    assert refused["error"]["code"] == "rate_limited" and refused["error"]["retry_after"] >= 1
    assert (await rest(agent, "get", "/api/v1/memories")).status_code == 429
    # A heartbeat is not a request; another key has its own budget.
    assert await ask(socket, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
    other = await connect(reader)
    assert (await ask(other, {"type": "recall", "id": "r", "query": "fact"}))["type"] != "error"
    assert await sync_to_async(Memory.objects.count)() == 2
    await socket.disconnect()
    await other.disconnect()


async def test_connections_per_key_are_capped_and_released(monkeypatch, agent):
    monkeypatch.setitem(LIMITS, "max_connections_per_principal", 2)
    first, second = await connect(agent), await connect(agent)
    third = await connect()
    await third.send_json_to({"type": "auth", "key": agent.raw, "id": "a"})
    refused = await third.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["error"]["code"] == "too_many_connections"
    assert await closed_with(third) == 4429
    await first.disconnect()
    again = await connect(agent)  # the closed connection's slot is free again
    assert await ask(again, {"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
    await second.disconnect()
    await again.disconnect()


async def _session(alpha, origin: bytes, host: bytes = b"memory.example.org"):
    """A logged-in admin's socket from a browser page at ``origin``, to ``host``; the
    WebSocket application built now, with the settings as the test has them."""
    from channels.testing import WebsocketCommunicator

    from apps.live.routing import websocket_application

    name = f"person-{len(origin)}-{origin[-6:].decode()}"
    headers = await session_headers(name, alpha, Role.ADMIN, origin)
    socket = WebsocketCommunicator(websocket_application(), "/ws/v1/live",
                                   headers=[*headers, (b"host", host)])
    connected, _ = await socket.connect(timeout=5)
    return socket, connected


async def test_a_session_socket_from_another_site_is_refused_even_with_any_host(settings, alpha):
    """With ALLOWED_HOSTS='*' (common behind proxies) the Origin used to be checked against
    ALLOWED_HOSTS, so any site could open a socket riding a logged-in person's session."""
    settings.ALLOWED_HOSTS = ["*"]
    _, connected = await _session(alpha, b"http://evil.example")
    assert not connected
    # The page's own site, or an origin the operator trusts for CSRF, is let through.
    same, connected = await _session(alpha, b"https://memory.example.org")
    assert connected and (await same.receive_json_from(timeout=5))["type"] == "ready"
    await same.disconnect()
    settings.CSRF_TRUSTED_ORIGINS = ["https://dashboard.example.org"]
    trusted, connected = await _session(alpha, b"https://dashboard.example.org")
    assert connected and (await trusted.receive_json_from(timeout=5))["type"] == "ready"
    await trusted.disconnect()
    # A host the server does not serve is refused even when the Origin matches it.
    settings.ALLOWED_HOSTS = ["memory.example.org"]
    _, connected = await _session(alpha, b"https://other.example", b"other.example")
    assert not connected
