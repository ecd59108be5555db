"""One MCP session's steps, the same over stdio (tests/mcp/test_stdio.py) and over
streamable HTTP (tests/mcp/test_http.py): what an agent may do, then an admin."""

from __future__ import annotations

import json

from tests.helpers.embedded import manage_commands, migrate

TOOLS = {"store", "recall", "update", "forget", "list_recent", "timeline_browse", "grip_expand",
         "end_of_day", "consolidate"}
#: ``manage.py shell -c`` code revoking the agent's key while its session is open.
REVOKE = ("from django.utils import timezone; from apps.tenancy.models import ApiKey; "
          "ApiKey.objects.filter(agent_id='agent-bot').update(revoked_at=timezone.now())")


def agent_and_admin_keys(env: dict[str, str]) -> dict[str, str]:
    """A migrated data directory with the namespace ``demo``; an agent and an admin key."""
    migrate(env)
    roles = ("agent", "admin")
    _, *keys = manage_commands(env, ["create_namespace", "demo"], *(
        ["create_api_key", "--namespace", "demo", "--role", role, "--agent-id", f"{role}-bot"]
        for role in roles))
    return {role: key.splitlines()[-1] for role, key in zip(roles, keys, strict=True)}


def payload(result) -> dict:
    """A tool result's JSON, after asserting it is no error."""
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def agent_steps(session) -> str:
    """Lists the tools, stores, recalls, lists; refused edits come back as tool errors.
    Returns the stored memory's id."""
    listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    assert "content" in tools["store"].input_schema["properties"]
    assert all("ctx" not in tool.input_schema["properties"] for tool in tools.values())
    assert tools["recall"].description and tools["recall"].input_schema["required"] == ["query"]
    stored = payload(await session.call_tool("store", {
        "content": "The staging deploy needs the VPN.", "tags": ["ops"], "kind": "procedure"}))
    recalled = payload(await session.call_tool("recall", {"query": "what do I need to deploy "
                                                          "to staging?", "k": 3}))
    assert recalled["results"][0]["id"] == stored["id"]
    recent = payload(await session.call_tool("list_recent", {"limit": 5}))
    assert recent["memories"][0]["id"] == stored["id"]
    refused = await session.call_tool("update", {"id": stored["id"], "content": "changed"})
    assert refused.is_error and "may not edit" in refused.content[0].text  # an agent cannot
    bad = await session.call_tool("store", {"content": ""})
    assert bad.is_error and "invalid: content" in bad.content[0].text
    sneaky = await session.call_tool("forget", {"id": "../namespaces/demo/keys/1"})
    assert sneaky.is_error and "uuid" in sneaky.content[0].text.lower()  # refused by the schema
    return stored["id"]


async def admin_steps(session, memory_id: str) -> None:
    """Updates the agent's memory (a new version), forgets it, and is told it is gone."""
    updated = payload(await session.call_tool("update", {
        "id": memory_id, "content": "The staging deploy needs the VPN and a hardware key."}))
    assert updated["version"] == 2
    forgotten = payload(await session.call_tool("forget", {"id": memory_id}))
    assert forgotten == {"forgotten": memory_id}
    gone = await session.call_tool("forget", {"id": memory_id})
    assert gone.is_error and "not found" in gone.content[0].text
