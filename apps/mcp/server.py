"""The MCP server: memory tools with schemas and descriptions an LLM can use well.

Seed 003 offered store, recall, update and forget; MemoryWeb adds list_recent, the
timeline's timeline_browse and grip_expand (docs/timeline.md), and the lifecycle's
end_of_day and consolidate (docs/lifecycle.md). Every
tool calls a ``Backend`` (backends.py): the services in-process, or the REST API when
the command runs as a thin proxy. Validation, permissions, audit and events happen
there, once, as for every other door.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from channels.db import database_sync_to_async
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from apps.mcp.backends import Backend

INSTRUCTIONS = (
    "Long-term memory shared across sessions. Recall before answering questions about the "
    "user, their projects, conventions, earlier decisions or fixes; store durable facts, "
    "preferences and outcomes worth remembering (one self-contained statement per memory, "
    "no secrets). A memory that became wrong is updated (or forgotten, when asked) by a "
    "key with the team-admin role; with an agent key, store the correction instead."
)

Kind = Literal["fact", "preference", "episode", "procedure", "observation", "summary", "note"]
Level = Literal["segment", "day", "week", "month", "year"]


async def _call(backend: Callable[[Context | None], Backend], ctx: Context | None,
                operation: str, *args: Any) -> Any:
    """Find the caller's backend and run one operation (database, model, HTTP) on a worker
    thread of asgiref's pool: the SDK's own pool (AnyIO) keeps a non-daemon thread that
    would hold Daphne open at shutdown."""
    def run() -> Any:
        return getattr(backend(ctx), operation)(*args)

    # channels' wrapper closes stale or broken database connections around the call, as
    # Django does around a request (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
    return await database_sync_to_async(run, thread_sensitive=False)()


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def build_server(backend: Callable[[Context], Backend]) -> MCPServer:
    """An MCP server whose tools call ``backend(ctx)``, per call: over stdio one key serves
    the whole process, over HTTP each request carries its own (apps/mcp/http.py)."""
    server = MCPServer(name="memoryweb", title="MemoryWeb", instructions=INSTRUCTIONS)
    for register in (_memory_tools, _timeline_tools, _lifecycle_tools, _listing_tools):
        register(server, backend)  # in this order: the order tools/list shows them
    return server


def _memory_tools(server: MCPServer, backend: Callable[[Context], Backend]) -> None:
    """Seed 003's four: store, recall, update, forget."""

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
    async def store(
        content: Annotated[str, Field(description="The memory: one self-contained statement, "
                                      "e.g. 'The staging deploy needs VPN access.'")],
        kind: Annotated[Kind, Field(description="fact, preference, episode, procedure, "
                                    "observation, summary or note")] = "fact",
        tags: Annotated[list[str] | None, Field(description="Short labels for filtering, "
                                                "e.g. ['ops', 'staging']")] = None,
        importance: Annotated[float, Field(ge=0, le=1, description="0..1; how much this "
                                           "matters later (default 0.5)")] = 0.5,
        session_id: Annotated[str | None, Field(description="The conversation or task this "
                                                "came from")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Extra JSON fields; "
                                                         "subject_id names a person")] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Store a memory. Identical content already stored is not duplicated: the existing
        memory comes back with duplicate=true."""
        memory = _drop_none({"content": content, "kind": kind, "tags": tags,
                             "importance": importance, "session_id": session_id,
                             "metadata": metadata})
        return await _call(backend, ctx, "store", memory)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def recall(
        query: Annotated[str, Field(description="What you want to know, in words: a question "
                                    "or keywords")],
        k: Annotated[int, Field(ge=1, le=100, description="How many memories (default 5)")] = 5,
        tags: Annotated[list[str] | None, Field(description="Only memories that have all of "
                                                "these tags")] = None,
        kind: Annotated[Kind | None, Field(description="Only memories of this kind")] = None,
        mode: Annotated[Literal["hybrid", "vector", "lexical"] | None,
                        Field(description="hybrid (default): meaning and keywords; vector: "
                              "meaning; lexical: exact words")] = None,
        include_shared: Annotated[bool, Field(description="Also search namespaces that "
                                              "share memories with yours")] = False,
        as_of: Annotated[datetime | None, Field(description="Answer as of this moment (ISO "
                                                "8601): what was known then, edited "
                                                "memories as they were")] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Find the memories that best answer a query, best first, each with its id and
        score (ids are what update and forget take)."""
        filters = _drop_none({"tags": tags, "kind": kind})
        request = _drop_none({"query": query, "k": k, "mode": mode,
                              "include_shared": include_shared, "filters": filters or None,
                              "as_of": as_of.isoformat() if as_of else None})
        return await _call(backend, ctx, "recall", request)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True,
                                             idempotentHint=True))
    async def update(
        id: Annotated[uuid.UUID, Field(description="The memory's id (from recall or store)")],
        content: Annotated[str | None, Field(description="The corrected statement")] = None,
        tags: Annotated[list[str] | None, Field(description="Replaces the tags")] = None,
        kind: Annotated[Kind | None, Field(description="A new kind")] = None,
        importance: Annotated[float | None, Field(ge=0, le=1, description="A new importance")] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Correct a memory (needs the team-admin role): only the fields given change, and
        the previous version is kept in its history."""
        changes = _drop_none({"content": content, "tags": tags, "kind": kind,
                              "importance": importance})
        return await _call(backend, ctx, "update", str(id), changes)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True,
                                             idempotentHint=True))
    async def forget(
        id: Annotated[uuid.UUID, Field(description="The memory's id (from recall or store)")],
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Delete a memory (needs the team-admin role). For a person's data protection
        request, an administrator uses a certified erasure instead."""
        await _call(backend, ctx, "forget", str(id))
        return {"forgotten": str(id)}


def _timeline_tools(server: MCPServer, backend: Callable[[Context], Backend]) -> None:
    """The timeline's browse and grip expansion (docs/timeline.md)."""

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def timeline_browse(
        level: Annotated[Level, Field(description="day (default), week, month, year, or "
                                      "segment (a stretch of one session)")] = "day",
        start: Annotated[str | None, Field(description="From this date (YYYY-MM-DD) or "
                                           "ISO date-time, UTC")] = None,
        end: Annotated[str | None, Field(description="Up to this date (included) or "
                                         "date-time")] = None,
        node_id: Annotated[uuid.UUID | None, Field(description="Open this node instead: its "
                                                   "summary, children and grips")] = None,
        agent_id: Annotated[str | None, Field(description="An agent's own timeline, if one "
                                              "is built; absent: the namespace's")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many nodes (default "
                                    "20)")] = 20,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """What happened when: the timeline's summaries by day, week, month or year
        (oldest first), or one node with its children and grips. Each grip quotes the
        source that supports a part of the summary; grip_expand shows its context."""
        if node_id is not None:
            return await _call(backend, ctx, "timeline_node", str(node_id))
        params = _drop_none({"level": level, "from": start, "to": end, "agent_id": agent_id,
                             "limit": limit})
        return {"results": await _call(backend, ctx, "timeline_browse", params)}

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def grip_expand(
        grip_id: Annotated[uuid.UUID, Field(description="A grip's id (from timeline_browse "
                                            "with node_id)")],
        before: Annotated[int, Field(ge=0, le=50, description="Memories before the source "
                                     "(default 5)")] = 5,
        after: Annotated[int, Field(ge=0, le=50, description="Memories after it (default "
                                    "5)")] = 5,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """The exact source of a timeline summary's statement, with the conversation
        around it (same session, in order): read it before relying on a summary."""
        return await _call(backend, ctx, "grip_expand", str(grip_id), before, after)


def _lifecycle_tools(server: MCPServer, backend: Callable[[Context], Backend]) -> None:
    """The lifecycle's end-of-day digest and consolidation (docs/lifecycle.md)."""

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                             idempotentHint=True))
    async def end_of_day(
        date: Annotated[str | None, Field(description="The day (UTC) as YYYY-MM-DD, not "
                                          "after today; default today")] = None,
        agent_id: Annotated[str | None, Field(description="That agent's own digest; absent: "
                                              "the whole namespace's")] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """The day's digest (needs the team-admin role): the day's summary with grips to
        the memories and events it quotes, built now for that day. Asking again with
        nothing new that day builds nothing (built=false, the same node); a day with no
        memories answers empty=true."""
        return await _call(backend, ctx, "end_of_day", date, agent_id)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                             idempotentHint=True))
    async def consolidate(
        dry_run: Annotated[bool, Field(description="Only propose (default); false merges: "
                                       "each group's best member stays, the others are "
                                       "superseded by it (reversible by unmerge)")] = True,
        threshold: Annotated[float | None, Field(ge=0.5, le=1.0, description="Similarity "
                                                 "at which two memories say the same thing "
                                                 "(default: the server's)")] = None,
        agent_id: Annotated[str | None, Field(description="Only this agent's memories")] = None,
        merged_text: Annotated[Literal["member", "summary"] | None, Field(
            description="What a merged memory says: its best member's own text, or the "
            "summarizer's text of the group (default: the namespace's setting, else member)"
        )] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Find the memories of the namespace that say the same thing (needs the
        team-admin role): groups with their similarities and the memory each would keep;
        pairs alike but for a number, a name, a date or a negation are listed as conflicts
        and never merged."""
        params: dict[str, Any] = {"dry_run": dry_run}
        if threshold is not None:
            params["threshold"] = threshold
        if agent_id:
            params["filters"] = {"agent_id": agent_id}
        if merged_text:
            params["merged_text"] = merged_text
        return await _call(backend, ctx, "consolidate", params)


def _listing_tools(server: MCPServer, backend: Callable[[Context], Backend]) -> None:
    """What happened lately."""

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def list_recent(
        limit: Annotated[int, Field(ge=1, le=100, description="How many (default 10)")] = 10,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """The most recently stored memories, newest first: what happened lately."""
        return {"memories": await _call(backend, ctx, "list_recent", limit)}
