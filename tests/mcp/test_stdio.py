"""An MCP client from the official SDK spawns ``manage.py mcp`` over stdio, embedded and as
a proxy to a real Daphne server: it lists the five tools, stores, recalls the stored
memory, updates, forgets; permission errors come back as tool errors with the API's
message."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.ops.test_daphne_server import _manage, embedded_env  # noqa: F401  (fixture)
from tests.servers import ROOT, DaphneServer

TOOLS = {"store", "recall", "update", "forget", "list_recent"}


def _keys(env) -> dict[str, str]:
    _manage(env, "migrate", "-v0")
    _manage(env, "create_namespace", "demo")
    return {role: _manage(env, "create_api_key", "--namespace", "demo", "--role", role,
                          "--agent-id", f"{role}-bot").splitlines()[-1]
            for role in ("agent", "admin")}


def _payload(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def _session_run(env: dict[str, str], key: str, args: list[str], steps):
    parameters = StdioServerParameters(command=sys.executable, args=["manage.py", "mcp", *args],
                                       env={**env, "MEMORYWEB_API_KEY": key}, cwd=str(ROOT))
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await steps(session)


async def _agent_steps(session):
    listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    assert "content" in tools["store"].input_schema["properties"]
    assert all("ctx" not in tool.input_schema["properties"] for tool in tools.values())
    assert tools["recall"].description and tools["recall"].input_schema["required"] == ["query"]
    stored = _payload(await session.call_tool("store", {
        "content": "The staging deploy needs the VPN.", "tags": ["ops"], "kind": "procedure"}))
    recalled = _payload(await session.call_tool("recall", {"query": "what do I need to deploy "
                                                           "to staging?", "k": 3}))
    assert recalled["results"][0]["id"] == stored["id"]
    recent = _payload(await session.call_tool("list_recent", {"limit": 5}))
    assert recent["memories"][0]["id"] == stored["id"]
    refused = await session.call_tool("update", {"id": stored["id"], "content": "changed"})
    assert refused.is_error and "may not edit" in refused.content[0].text  # an agent cannot
    bad = await session.call_tool("store", {"content": ""})
    assert bad.is_error and "invalid: content" in bad.content[0].text
    sneaky = await session.call_tool("forget", {"id": "../namespaces/demo/keys/1"})
    assert sneaky.is_error and "uuid" in sneaky.content[0].text.lower()  # refused by the schema
    return stored["id"]


REVOKE = ("from django.utils import timezone; from apps.tenancy.models import ApiKey; "
          "ApiKey.objects.filter(agent_id='agent-bot').update(revoked_at=timezone.now())")


def _revoke_and_check(env: dict[str, str]):
    """Revoke the agent key while the session is open: the next call is refused."""
    async def steps(session):
        assert not (await session.call_tool("list_recent", {"limit": 1})).is_error
        _manage(env, "shell", "-c", REVOKE)
        after = await session.call_tool("list_recent", {"limit": 1})
        assert after.is_error and "authentication_failed" in after.content[0].text, after.content
    return steps


async def _admin_steps(session, memory_id: str):
    updated = _payload(await session.call_tool("update", {
        "id": memory_id, "content": "The staging deploy needs the VPN and a hardware key."}))
    assert updated["version"] == 2
    forgotten = _payload(await session.call_tool("forget", {"id": memory_id}))
    assert forgotten == {"forgotten": memory_id}
    gone = await session.call_tool("forget", {"id": memory_id})
    assert gone.is_error and "not found" in gone.content[0].text


@pytest.mark.parametrize("mode", ["embedded", "proxy"])
def test_mcp_over_stdio(embedded_env, tmp_path, mode):  # noqa: F811
    keys = _keys(embedded_env)
    if mode == "embedded":
        memory_id = asyncio.run(_session_run(embedded_env, keys["agent"], [], _agent_steps))
        asyncio.run(_session_run(embedded_env, keys["admin"], [],
                                 lambda session: _admin_steps(session, memory_id)))
        asyncio.run(_session_run(embedded_env, keys["agent"], [], _revoke_and_check(embedded_env)))
        return
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        args = ["--server-url", server.url]
        memory_id = asyncio.run(_session_run(embedded_env, keys["agent"], args, _agent_steps))
        asyncio.run(_session_run(embedded_env, keys["admin"], args,
                                 lambda session: _admin_steps(session, memory_id)))
        asyncio.run(_session_run(embedded_env, keys["agent"], args, _revoke_and_check(embedded_env)))


def test_mcp_refuses_to_start_without_a_valid_key(embedded_env):  # noqa: F811
    import subprocess

    _manage(embedded_env, "migrate", "-v0")
    for key in ("", "mw_live_not_a_real_key"):
        done = subprocess.run([sys.executable, "manage.py", "mcp"], cwd=ROOT, timeout=120,
                              env={**embedded_env, "MEMORYWEB_API_KEY": key},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert done.returncode != 0 and "MEMORYWEB_API_KEY" in done.stderr
