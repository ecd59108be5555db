"""MCP over streamable HTTP at /mcp on a real Daphne: the SDK's client with a bearer key
lists the five tools, stores, recalls, updates, forgets; permission errors are tool
errors; no key or a bad key is a 401 before the MCP layer."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.helpers.embedded import manage
from tests.helpers.mcp import REVOKE, admin_steps, agent_and_admin_keys, agent_steps
from tests.servers import DaphneServer


async def _over_http(url: str, key: str, steps):
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    async with client, streamable_http_client(f"{url}/mcp", http_client=client) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        return await steps(session)


def _revoked_over_http(env):
    """Over HTTP the key is checked on every request, before MCP: revoked, the next call's
    request is refused (401), which the client reports as an error."""
    async def steps(session):
        assert not (await session.call_tool("list_recent", {"limit": 1})).is_error
        manage(env, "shell", "-c", REVOKE)
        with pytest.raises(MCPError, match="Server returned an error response"):
            await session.call_tool("list_recent", {"limit": 1})
    return steps


def test_mcp_over_http(embedded_env, tmp_path):
    keys = agent_and_admin_keys(embedded_env)
    # REVOKE is a shell's data fix in another process: seen at the next call only when the
    # server looks keys up on every call (else within MEMORYWEB_KEY_CACHE_SECONDS).
    embedded_env["MEMORYWEB_KEY_CACHE_SECONDS"] = "0"
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        memory_id = asyncio.run(_over_http(server.url, keys["agent"], agent_steps))
        asyncio.run(_over_http(server.url, keys["admin"], lambda s: admin_steps(s, memory_id)))
        for headers in ({}, {"Authorization": "Bearer mw_live_wrong"}, {"Authorization": "Basic x"}):
            refused = httpx.post(f"{server.url}/mcp", headers=headers, timeout=30,
                                 json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
        twice = httpx.post(f"{server.url}/mcp", timeout=30, json={"jsonrpc": "2.0", "id": 1},
                           headers=[("Authorization", f"Bearer {keys['admin']}"),
                                    ("Authorization", f"Bearer {keys['agent']}")])
        assert twice.status_code == 401  # one credential per request, not two to choose from
        asyncio.run(_over_http(server.url, keys["agent"], _revoked_over_http(embedded_env)))
        # The rest of the site is untouched by the mount.
        assert httpx.get(f"{server.url}/health", timeout=30).json() == {"status": "ok"}
