"""/ws/v1/live through Channels' WebsocketCommunicator against the real ASGI application."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.core.roles import Role
from apps.live.consumers import LIMITS
from apps.memories.models import Memory
from apps.tenancy.models import SharingGrant
from memoryweb.asgi import application
from tests.helpers.callers import make_caller
from tests.helpers.websocket import TIMEOUT, ask, closed_with, connect, rest, session_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("close_sync_thread_connections")]


async def test_no_credential_is_closed_after_the_timeout(monkeypatch, db):
    monkeypatch.setitem(LIMITS, "auth_timeout_seconds", 0.2)
    socket = await connect()
    assert await closed_with(socket) == 4401


async def test_a_bad_key_is_closed_at_once(alpha):
    socket = await connect(headers=[(b"authorization", b"Bearer mw_live_not-a-key")])
    assert await closed_with(socket) == 4401


async def test_first_message_auth_and_ping(agent):
    socket = await connect()
    ready = await ask(socket, {"type": "auth", "key": agent.raw, "id": "a1"})
    assert ready == {"type": "ready", "id": "a1", "principal": f"key:{agent.key.prefix}",
                     "role": "agent"}
    assert await ask(socket, {"type": "ping", "id": "p1"}) == {"type": "pong", "id": "p1"}
    await socket.disconnect()


async def test_messages_before_auth_close_the_socket(agent):
    socket = await connect()
    await socket.send_json_to({"type": "ping"})
    assert await closed_with(socket) == 4401


async def test_bad_messages_get_errors_naming_the_problem(agent):
    socket = await connect(agent)
    error = await ask(socket, {"type": "fly", "id": "x"})
    assert error["type"] == "error" and error["id"] == "x" and error["error"]["field"] == "type"
    await socket.send_to(text_data="not json")
    assert (await socket.receive_json_from(timeout=TIMEOUT))["error"]["code"] == "invalid"
    error = await ask(socket, {"type": "recall", "id": "r", "query": ""})
    assert error["type"] == "error" and error["error"]["field"] == "query"
    error = await ask(socket, {"type": "ingest", "id": "i", "content": "x", "agent_id": "me"})
    assert error["error"]["field"] == "agent_id"
    await socket.disconnect()


async def test_streamed_recall_equals_the_rest_result(agent, stored):
    for text in ("The deploy window is Tuesday night.", "Lunch is at noon.",
                 "Deploys need two approvals."):
        await sync_to_async(stored)(text)
    body = {"query": "when can we deploy", "k": 3, "explain": True}
    expected = (await rest(agent, "post", "/api/v1/recall", body)).json()
    socket = await connect(agent)
    await socket.send_json_to({"type": "recall", "id": "r1", **body})
    partial = await socket.receive_json_from(timeout=TIMEOUT)
    assert partial["type"] == "recall.partial" and partial["stage"] == "lexical"
    final = await socket.receive_json_from(timeout=TIMEOUT)
    assert final["type"] == "recall.results" and final["id"] == "r1"
    # The first recall counts as a use: what changes with it (the strength explain shows).
    strip = lambda rows: [{k: v if k != "explain" else {  # noqa: E731
        n: p for n, p in v.items() if n != "strength"} for k, v in r.items()
        if k not in ("access_count", "last_recalled_at")} for r in rows]
    assert strip(final["results"]) == strip(expected["results"])
    assert {r["id"] for r in partial["results"]} <= {r["id"] for r in final["results"]} | {
        m for m in map(str, await sync_to_async(list)(Memory.objects.values_list("pk", flat=True)))}
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "done", "id": "r1"}
    await socket.disconnect()


async def test_ingest_over_the_socket(agent, reader):
    socket = await connect(agent)
    reply = await ask(socket, {"type": "ingest", "id": "i1", "content": "Socket-stored fact."})
    assert reply["type"] == "ingested" and reply["results"][0]["duplicate"] is False
    assert reply["results"][0]["agent_id"] == "agent-1"
    batch = await ask(socket, {"type": "ingest", "id": "i2", "memories": [
        {"content": "one"}, {"content": "two"}]})
    assert [r["content"] for r in batch["results"]] == ["one", "two"]
    await socket.disconnect()
    read_only = await connect(reader)
    denied = await ask(read_only, {"type": "ingest", "id": "i3", "content": "nope"})
    assert denied["error"]["code"] == "permission_denied"
    await read_only.disconnect()


async def test_a_standing_query_gets_matching_memories_and_not_others(alpha, agent):
    other_agent = await sync_to_async(make_caller)(Role.AGENT, alpha, "agent-2")
    socket = await connect(agent)
    reply = await ask(socket, {"type": "subscribe", "id": "s1",
                               "query": "database migration failed", "min_score": 0.5})
    assert reply == {"type": "subscribed", "id": "s1", "namespaces": 1}
    await rest(other_agent, "post", "/api/v1/memories",
               {"content": "The lunch menu has soup today."})
    stored = (await rest(other_agent, "post", "/api/v1/memories",
                         {"content": "The database migration failed on the orders table."})).json()
    match = await socket.receive_json_from(timeout=TIMEOUT)
    assert match["type"] == "match" and match["id"] == "s1" and match["event"] == "created"
    assert match["memory"]["id"] == stored["id"] and match["score"] >= 0.5
    assert match["memory"]["agent_id"] == "agent-2" and match["shared"] is False
    assert await socket.receive_nothing(timeout=0.3)  # the lunch menu was not pushed
    assert (await ask(socket, {"type": "unsubscribe", "id": "s1"}))["type"] == "unsubscribed"
    await rest(other_agent, "post", "/api/v1/memories",
               {"content": "Another database migration failed tonight."})
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_filters_apply_to_standing_queries(alpha, agent):
    socket = await connect(agent)
    await ask(socket, {"type": "subscribe", "id": "s1", "query": "server outage",
                       "filters": {"tags": ["ops"]}, "min_score": 0.3})
    await rest(agent, "post", "/api/v1/memories", {"content": "Server outage in region A."})
    assert await socket.receive_nothing(timeout=0.3)
    tagged = (await rest(agent, "post", "/api/v1/memories",
                         {"content": "Server outage in region B.", "tags": ["ops"]})).json()
    assert (await socket.receive_json_from(timeout=TIMEOUT))["memory"]["id"] == tagged["id"]
    await socket.disconnect()


async def test_an_outsider_never_hears_another_namespace(agent, outsider):
    socket = await connect(outsider)
    await ask(socket, {"type": "subscribe", "id": "s1", "query": "secret launch plan",
                       "min_score": 0.0})
    await ask(socket, {"type": "events", "id": "e1"})
    await rest(agent, "post", "/api/v1/memories", {"content": "The secret launch plan is set."})
    assert await socket.receive_nothing(timeout=0.5)
    denied = await ask(socket, {"type": "subscribe", "id": "s2", "query": "x",
                                "namespace": "alpha"})
    assert denied["error"]["code"] == "not_found"
    await socket.disconnect()


async def test_event_feed_and_erasure_events_carry_no_content(alpha, agent, team_admin,
                                                              system_admin):
    socket = await connect(team_admin)
    assert (await ask(socket, {"type": "events", "id": "e1"}))["type"] == "watching"
    created = (await rest(agent, "post", "/api/v1/memories",
                          {"content": "Dana's private note.", "metadata": {"subject_id": "dana"}}
                          )).json()
    event = await socket.receive_json_from(timeout=TIMEOUT)
    assert event["event"] == "created" and event["memories"][0]["row"]["content"]
    assert "embedding" not in event["memories"][0]
    await rest(team_admin, "patch", f"/api/v1/memories/{created['id']}", {"importance": 0.9})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["event"] == "updated"
    erasure = (await rest(team_admin, "post", "/api/v1/erasure-requests",
                          {"subject_id": "dana"})).json()
    await rest(team_admin, "post", f"/api/v1/erasure-requests/{erasure['id']}/approve")
    await rest(system_admin, "post", f"/api/v1/erasure-requests/{erasure['id']}/execute")
    event = await socket.receive_json_from(timeout=TIMEOUT)
    assert event["event"] == "deleted" and event["erasure"] is True
    assert event["memories"] == [{"id": created["id"]}]
    assert "Dana" not in json.dumps(event) and "dana" not in json.dumps(event)
    await socket.disconnect()


async def test_revoking_the_key_ends_live_access(agent, team_admin):
    socket = await connect(agent)
    await rest(team_admin, "delete", f"/api/v1/namespaces/alpha/keys/{agent.key.pk}")
    assert await closed_with(socket) == 4403


async def test_revoking_a_grant_ends_shared_matches(alpha, beta, agent, team_admin, outsider):
    grant = (await rest(team_admin, "post", "/api/v1/namespaces/alpha/grants",
                        {"grantee": "beta"})).json()
    socket = await connect(outsider)
    reply = await ask(socket, {"type": "subscribe", "id": "s1", "query": "quarterly revenue",
                               "include_shared": True, "min_score": 0.4})
    assert reply["namespaces"] == 2
    await rest(agent, "post", "/api/v1/memories", {"content": "Quarterly revenue grew 8%."})
    match = await socket.receive_json_from(timeout=TIMEOUT)
    assert match["shared"] is True and match["namespace"] == "alpha"
    await rest(team_admin, "delete", f"/api/v1/namespaces/alpha/grants/{grant['id']}")
    await socket.receive_nothing(timeout=0.3)  # the control message is handled
    await rest(agent, "post", "/api/v1/memories", {"content": "Quarterly revenue fell 2%."})
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()
    assert not await sync_to_async(SharingGrant.objects.filter(revoked_at__isnull=True).exists)()


async def test_subscription_caps(monkeypatch, agent):
    monkeypatch.setitem(LIMITS, "max_subscriptions", 1)
    socket = await connect(agent)
    assert (await ask(socket, {"type": "subscribe", "id": "a", "query": "x"}))["type"] == \
        "subscribed"
    error = await ask(socket, {"type": "subscribe", "id": "b", "query": "y"})
    assert error["error"]["code"] == "too_many"
    assert (await ask(socket, {"type": "subscribe", "query": "z"}))["error"]["field"] == "id"
    await socket.disconnect()


async def test_message_rate_is_capped(monkeypatch, agent):
    monkeypatch.setitem(LIMITS, "burst", 3)
    monkeypatch.setitem(LIMITS, "messages_per_second", 0.001)
    socket = await connect(agent)
    for i in range(3):
        assert (await ask(socket, {"type": "ping", "id": str(i)}))["type"] == "pong"
    assert (await ask(socket, {"type": "ping", "id": "over"}))["error"]["code"] == "throttled"
    for _ in range(3):
        await socket.send_json_to({"type": "ping"})
    assert await closed_with(socket) == 4429


async def test_a_consumer_that_falls_behind_a_burst_is_dropped(monkeypatch, alpha, agent):
    """One event fans out to the feed and three standing queries at once: more than a
    two-message send queue holds, so the connection is closed, not allowed to grow."""
    monkeypatch.setitem(LIMITS, "send_queue", 2)
    socket = await connect(agent)
    await ask(socket, {"type": "events", "id": "e1"})
    for name in ("s1", "s2", "s3"):
        await ask(socket, {"type": "subscribe", "id": name, "query": "disk full alert",
                           "min_score": 0.3})
    await rest(agent, "post", "/api/v1/memories", {"content": "Disk full alert on db-2."})
    assert await closed_with(socket) == 4408


async def test_a_logged_in_person_connects_with_the_session(monkeypatch, alpha, agent):
    headers = await session_headers("dana", alpha, Role.READER, b"http://testserver")
    socket = await connect(headers=headers)
    ready = await socket.receive_json_from(timeout=TIMEOUT)
    assert ready["principal"] == "user:dana" and ready["role"] is None
    watching = await ask(socket, {"type": "events", "id": "e1"})
    assert watching["namespaces"] == 1  # her memberships
    await rest(agent, "post", "/api/v1/memories", {"content": "Seen by Dana's dashboard."})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["event"] == "created"
    await socket.disconnect()


async def test_a_session_without_origin_is_not_trusted(monkeypatch, alpha):
    monkeypatch.setitem(LIMITS, "auth_timeout_seconds", 0.2)
    socket = await connect(headers=await session_headers("eve", alpha, Role.ADMIN, None))
    assert await closed_with(socket) == 4401


async def test_a_foreign_origin_is_refused_at_the_handshake(alpha):
    headers = await session_headers("mallory", alpha, Role.ADMIN, b"https://evil.example")
    socket = WebsocketCommunicator(application, "/ws/v1/live", headers=headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert not connected


async def test_a_team_admins_session_without_required_totp_is_refused(settings, alpha):
    settings.MEMORYWEB_REQUIRE_MFA = True
    socket = await connect(headers=await session_headers("tess", alpha, Role.ADMIN,
                                                         b"http://testserver"))
    assert await closed_with(socket) == 4403
