"""Every door draws from one rate budget per key, over the wire on real Daphne processes.

REST (and the drop-in routes), MCP's ``tools/call`` and WebSocket request messages share
``MEMORYWEB_RATE_LIMIT``; WebSocket connections per key are capped; ``GET /mcp`` answers
at once; deep JSON and over-size frames get proper answers and close codes; a key that
expires while its socket is open closes it with 4403. Then the same budget and cap
across two processes sharing Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.embedded import REDIS_URL, manage, manage_commands, migrate
from tests.servers import ChromaServer, DaphneServer

#: How long a client waits for an answer that must come (a hang fails the test).
WAIT = 20
DEEP = '{"api_key": ' + "[" * 5000 + "]" * 5000 + "}"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def _keys(env, *names: str) -> dict[str, str]:
    migrate(env)
    _, *keys = manage_commands(env, ["create_namespace", "demo"], *(
        ["create_api_key", "--namespace", "demo", "--role", "agent", "--agent-id", name]
        for name in names))
    return {name: key.splitlines()[-1] for name, key in zip(names, keys, strict=True)}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _socket(server, key: str):
    socket = connect(server.url.replace("http", "ws") + "/ws/v1/live",
                     additional_headers=_bearer(key), open_timeout=WAIT)
    assert json.loads(socket.recv(timeout=WAIT))["type"] == "ready"
    return socket


def _ask(socket, message: dict) -> dict:
    socket.send(json.dumps(message))
    return json.loads(socket.recv(timeout=WAIT))


def _close_code(socket) -> int:
    """The close code the server sent, after any messages before it."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.recv(timeout=WAIT)
    assert closed.value.rcvd is not None, "the server dropped the connection without a close"
    return closed.value.rcvd.code


def _tool_call(name: str, arguments: dict, request_id: int = 7) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


async def _sdk(url: str, key: str, steps):
    client = httpx2.AsyncClient(headers=_bearer(key), timeout=WAIT)
    async with client, streamable_http_client(f"{url}/mcp", http_client=client) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        return await steps(session)


async def _store_is_refused(session):
    with pytest.raises(MCPError, match="rate_limited"):
        await session.call_tool("store", {"content": "over the budget through MCP"})


async def _spend(session, times: int):
    for _ in range(times):
        assert not (await session.call_tool("list_recent", {"limit": 1})).is_error


def _get_within(url: str, headers: dict[str, str]) -> httpx.Response:
    """GET that must be answered in ``WAIT`` seconds in all (an idle stream that sends a
    keep-alive now and then would never trip a per-read timeout)."""
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(timeout=WAIT) as client:
            return await asyncio.wait_for(client.get(url, headers=headers), WAIT)
    return asyncio.run(get())


def _count(server, key: str) -> int:
    listed = httpx.get(f"{server.url}/api/v1/memories", headers=_bearer(key), timeout=WAIT)
    assert listed.status_code == 200, listed.text
    return listed.json()["count"]


def test_one_budget_across_rest_mcp_and_the_websocket(embedded_env, tmp_path):
    keys = _keys(embedded_env, "rest-first", "mcp-first", "bystander")
    env = {**embedded_env, "MEMORYWEB_RATE_LIMIT": "10/min"}
    with DaphneServer(tmp_path / "daphne.log", env) as server:
        # REST spends the key's budget ...
        rest = httpx.Client(base_url=server.url, headers=_bearer(keys["rest-first"]), timeout=WAIT)
        assert rest.post("/api/v1/memories", json={"content": "stored over REST"}).status_code == 201
        statuses = [rest.get("/api/v1/memories").status_code for _ in range(12)]
        assert statuses.count(200) == 9 and statuses[-1] == 429
        limited = rest.get("/api/v1/memories")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        # ... and then MCP refuses its tool calls (SDK and plain JSON-RPC alike) ...
        asyncio.run(_sdk(server.url, keys["rest-first"], _store_is_refused))
        raw = httpx.post(f"{server.url}/mcp", timeout=WAIT,
                         headers={**_bearer(keys["rest-first"]), **MCP_HEADERS},
                         json=_tool_call("store", {"content": "over the budget, raw"}))
        assert raw.status_code == 429 and int(raw.headers["Retry-After"]) >= 1
        error = raw.json()
        assert error["id"] == 7 and error["error"]["code"] == -32029
        assert error["error"]["data"]["code"] == "rate_limited"
        # A body the budget's parser refuses (NaN, which the SDK's parser would take) is
        # refused, never handed on uncharged.
        lax = ('{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "store",'
               ' "arguments": {"content": "past the budget with NaN"}, "_meta": {"x": NaN}}}')
        raw = httpx.post(f"{server.url}/mcp", timeout=WAIT, content=lax,
                         headers={**_bearer(keys["rest-first"]), **MCP_HEADERS,
                                  "Content-Type": "application/json"})
        assert raw.status_code == 400 and raw.json()["error"]["code"] == -32700, raw.text
        # ... and so does the WebSocket, per request message (a ping is not one).
        with _socket(server, keys["rest-first"]) as socket:
            refused = _ask(socket, {"type": "ingest", "id": "i1", "content": "over, by socket"})
            assert refused["error"]["code"] == "rate_limited" and refused["id"] == "i1"
            assert _ask(socket, {"type": "ping", "id": "p"})["type"] == "pong"
        # Nothing was stored past the budget; another key was never affected.
        assert _count(server, keys["bystander"]) == 1
        # The other way round: MCP spends it, REST and the socket are refused.
        asyncio.run(_sdk(server.url, keys["mcp-first"], lambda session: _spend(session, 10)))
        assert httpx.get(f"{server.url}/cmm/memories", headers=_bearer(keys["mcp-first"]),
                         timeout=WAIT).status_code == 429
        with _socket(server, keys["mcp-first"]) as socket:
            assert _ask(socket, {"type": "recall", "id": "r", "query": "x"})["error"]["code"] == \
                "rate_limited"


def test_caps_answers_and_close_codes_over_the_wire(embedded_env, tmp_path):
    keys = _keys(embedded_env, "capped", "expiring", "rotated", "plain")
    keys["admin"] = manage(embedded_env, "create_api_key", "--namespace", "demo", "--role",
                           "admin", "--agent-id", "admin").splitlines()[-1]
    env = {**embedded_env, "MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY": "2"}
    with DaphneServer(tmp_path / "daphne.log", env) as server:
        # WebSocket connections per key: the third is refused, saying why; a closed one
        # frees its slot.
        first, second = _socket(server, keys["capped"]), _socket(server, keys["capped"])
        third = connect(server.url.replace("http", "ws") + "/ws/v1/live",
                        additional_headers=_bearer(keys["capped"]), open_timeout=WAIT)
        assert json.loads(third.recv(timeout=WAIT))["error"]["code"] == "too_many_connections"
        assert _close_code(third) == 4429
        first.close()
        with _socket(server, keys["capped"]) as again:
            assert _ask(again, {"type": "ping", "id": "p"})["type"] == "pong"
        second.close()

        # GET /mcp opens no stream: 405 at once, whatever the client accepts.
        for accept in ("*/*", "text/event-stream", "application/json"):
            got = _get_within(f"{server.url}/mcp", {**_bearer(keys["plain"]), "Accept": accept})
            assert got.status_code == 405 and got.headers["Allow"] == "POST"
            assert got.json()["error"]["code"] == "method_not_allowed"

        # Deep JSON: 400 parse_error on the unauthenticated token route, -32700 on MCP,
        # an error and 4400 on the socket; the server stays up.
        token = httpx.post(f"{server.url}/v1/auth/token", content=DEEP, timeout=WAIT,
                           headers={"Content-Type": "application/json"})
        assert token.status_code == 400 and token.json()["code"] == "parse_error"
        deep_call = json.dumps(_tool_call("store", {"content": "x"})).replace(
            '"content": "x"', '"content": "x", "metadata": ' + "[" * 5000 + "]" * 5000)
        mcp = httpx.post(f"{server.url}/mcp", content=deep_call, timeout=WAIT,
                         headers={**_bearer(keys["plain"]), **MCP_HEADERS,
                                  "Content-Type": "application/json"})
        assert mcp.status_code == 400 and mcp.json()["error"]["code"] == -32700
        assert "nested deeper than 64" in mcp.json()["error"]["message"]
        with _socket(server, keys["plain"]) as socket:
            socket.send('{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}")
            assert json.loads(socket.recv(timeout=WAIT))["error"]["code"] == "parse_error"
            assert _close_code(socket) == 4400

        # An over-size frame is closed with 1009 (message too big), not dropped (1006).
        with _socket(server, keys["plain"]) as socket:
            socket.send("x" * (3 * 1024 * 1024))
            assert _close_code(socket) == 1009

        # A key given an expiry while connected, and a key rotated with a grace period:
        # each socket stays open until then (it used to close 1011 at once), then 4403.
        admin = httpx.Client(base_url=server.url, headers=_bearer(keys["admin"]), timeout=WAIT)
        listed = admin.get("/api/v1/namespaces/demo/keys")
        assert listed.status_code == 200, listed.text
        ids = {row["agent_id"]: row["id"] for row in listed.json()}
        with _socket(server, keys["expiring"]) as expiring, \
                _socket(server, keys["rotated"]) as rotated:
            soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).isoformat()
            keys_url = "/api/v1/namespaces/demo/keys"
            assert admin.patch(f"{keys_url}/{ids['expiring']}",
                               json={"expires_at": soon}).status_code == 200
            assert admin.post(f"{keys_url}/{ids['rotated']}/rotate",
                              json={"grace_seconds": 3}).status_code == 201
            for socket in (expiring, rotated):
                assert _ask(socket, {"type": "ping", "id": "p"})["type"] == "pong"
            assert _close_code(expiring) == 4403 and _close_code(rotated) == 4403
        assert httpx.get(f"{server.url}/health", timeout=WAIT).status_code == 200
    log = (tmp_path / "daphne.log").read_text()
    assert "no running event loop" not in log and "RecursionError" not in log


def test_budget_and_cap_hold_across_processes_over_redis(embedded_env, tmp_path,
                                                         redis_prefix):
    with ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log") as chroma:
        env = {**embedded_env, "CHROMA_URL": chroma.url, "REDIS_URL": REDIS_URL,
               "MEMORYWEB_CHANNEL_PREFIX": redis_prefix, "MEMORYWEB_RATE_LIMIT": "6/min",
               "MEMORYWEB_WS_MAX_CONNECTIONS_PER_KEY": "2"}
        keys = _keys(env, "spender", "holder")
        with DaphneServer(tmp_path / "a.log", env) as first, \
                DaphneServer(tmp_path / "b.log", env) as second:
            for _ in range(6):
                assert httpx.get(f"{first.url}/api/v1/memories", timeout=WAIT,
                                 headers=_bearer(keys["spender"])).status_code == 200
            assert httpx.get(f"{second.url}/api/v1/memories", timeout=WAIT,
                             headers=_bearer(keys["spender"])).status_code == 429
            asyncio.run(_sdk(second.url, keys["spender"], _store_is_refused))
            with _socket(first, keys["holder"]), _socket(second, keys["holder"]):
                third = connect(first.url.replace("http", "ws") + "/ws/v1/live",
                                additional_headers=_bearer(keys["holder"]), open_timeout=WAIT)
                assert json.loads(third.recv(timeout=WAIT))["error"]["code"] == \
                    "too_many_connections"
                assert _close_code(third) == 4429
