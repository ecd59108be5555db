"""The timeline at the other doors: a WebSocket event when a node changes (for the
namespace's readers, following the live protocol's schema), and the MCP tools
timeline_browse and grip_expand, in-process through the same services as REST."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from asgiref.sync import sync_to_async
from mcp.server.mcpserver.exceptions import ToolError

from apps.mcp.backends import ServiceBackend
from apps.mcp.server import build_server
from apps.tenancy.principal import Principal
from apps.timeline.build import build
from apps.timeline.models import Grip, RollupNode
from tests.helpers.websocket import TIMEOUT, ask, connect
from tests.timeline.conftest import COUNTS

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("fresh_layer", "close_sync_thread_connections")]
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "apps/live/schema.json").read_text())


async def _timeline_events(socket, wanted: int) -> list[dict]:
    """The next ``wanted`` timeline.node events (the summary memories' own created events
    come between them)."""
    found = []
    while len(found) < wanted:
        message = await socket.receive_json_from(timeout=TIMEOUT)
        if message.get("event") == "timeline.node":
            found.append(message)
    return found


async def test_a_node_change_reaches_the_namespaces_event_feed(alpha, history, reader, outsider):
    validator = jsonschema.Draft202012Validator({**SCHEMA, "$ref": "#/$defs/server"})
    socket, other = await connect(reader), await connect(outsider)
    assert (await ask(socket, {"type": "events", "id": "e1"}))["type"] == "watching"
    assert (await ask(other, {"type": "events", "id": "e2"}))["type"] == "watching"

    await sync_to_async(build)(alpha)

    events = await _timeline_events(socket, sum(COUNTS.values()))
    for event in events:
        validator.validate(event)
        assert event["id"] == "e1" and event["namespace"] == "alpha" and event["memories"] == []
        assert event["actor"] == "system:timeline" and event["node"]["change"] == "created"
        assert "summary" not in event["node"]  # where it sits, never what it says
    assert {e["node"]["level"] for e in events} == set(COUNTS)
    year = await sync_to_async(RollupNode.objects.get)(level="year")
    assert str(year.pk) in {e["node"]["id"] for e in events}
    assert await other.receive_nothing(timeout=0.5)  # beta's feed hears nothing of alpha
    await socket.disconnect()
    await other.disconnect()


def _principal(caller) -> Principal:
    return Principal.for_key(caller.key)


def _payload(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def test_the_mcp_tools_browse_open_and_expand(alpha, history, reader, outsider):
    await sync_to_async(build)(alpha)
    principal = await sync_to_async(_principal)(reader)
    server = build_server(lambda ctx: ServiceBackend(principal))
    tools = {tool.name: tool for tool in await server.list_tools()}
    assert {"timeline_browse", "grip_expand"} <= set(tools)
    assert tools["grip_expand"].input_schema["required"] == ["grip_id"]
    assert tools["timeline_browse"].annotations.read_only_hint

    days = _payload(await server.call_tool("timeline_browse", {}))["results"]
    assert [d["start"] for d in days] == ["2024-01-30T00:00:00Z", "2024-01-31T00:00:00Z",
                                          "2024-02-02T00:00:00Z"]
    months = _payload(await server.call_tool("timeline_browse", {
        "level": "month", "start": "2024-02-01", "limit": 5}))["results"]
    assert [m["start"] for m in months] == ["2024-02-01T00:00:00Z"]
    opened = _payload(await server.call_tool("timeline_browse", {"node_id": days[1]["id"]}))
    assert opened["id"] == days[1]["id"] and [c["level"] for c in opened["children"]] == ["segment"]
    grip = next(g for g in opened["grips"] if g["memory_id"] == history["venue"])
    expanded = _payload(await server.call_tool("grip_expand", {"grip_id": grip["id"],
                                                               "before": 1, "after": 0}))
    assert expanded["source"]["id"] == history["venue"]
    assert [m["id"] for m in expanded["before"]] == [history["date"]] and expanded["after"] == []

    with pytest.raises(ToolError, match="invalid: from must be a date"):
        await server.call_tool("timeline_browse", {"start": "yesterday"})
    with pytest.raises(ToolError, match="before"):  # the tool's schema refuses it first
        await server.call_tool("grip_expand", {"grip_id": grip["id"], "before": 99})
    foreign = await sync_to_async(_principal)(outsider)
    theirs = build_server(lambda ctx: ServiceBackend(foreign))
    with pytest.raises(ToolError, match="not_found"):
        await theirs.call_tool("grip_expand", {"grip_id": grip["id"]})
    with pytest.raises(ToolError, match="not_found"):
        await theirs.call_tool("timeline_browse", {"node_id": days[0]["id"]})
    grip_row = await sync_to_async(Grip.objects.get)(pk=grip["id"])
    assert str(grip_row.memory_id) == history["venue"]
