"""What the MCP tools call: the service layer directly (embedded), the running server
through its admin socket (embedded, beside a server), or the REST API (proxy).

All answer the same shapes as the REST API, and all turn a refusal into ``ToolError``
with the API's own message, which the MCP SDK returns to the agent as a tool error.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import httpx
from mcp.server.mcpserver.exceptions import ToolError


class Backend(Protocol):
    def store(self, data: dict[str, Any]) -> dict[str, Any]: ...
    def recall(self, data: dict[str, Any]) -> dict[str, Any]: ...
    def update(self, memory_id: str, data: dict[str, Any]) -> dict[str, Any]: ...
    def forget(self, memory_id: str) -> None: ...
    def list_recent(self, limit: int) -> list[dict[str, Any]]: ...
    def timeline_browse(self, params: dict[str, Any]) -> list[dict[str, Any]]: ...
    def timeline_node(self, node_id: str) -> dict[str, Any]: ...
    def grip_expand(self, grip_id: str, before: int, after: int) -> dict[str, Any]: ...
    def end_of_day(self, date: str | None, agent_id: str | None) -> dict[str, Any]: ...
    def consolidate(self, params: dict[str, Any]) -> dict[str, Any]: ...


def _sealed_refusals(cls: type) -> type:
    """Each public method of ``cls`` answers a ToolError naming why when an encrypted
    namespace's data cannot be read (a key gone, a ciphertext that does not open;
    docs/encryption.md) — raised where the text is first read, which may be while the
    answer is formatted, after the service returned."""
    from functools import wraps

    def guarded(method):
        @wraps(method)
        def call(*args, **kwargs):
            from apps.core.errors import sealed_data_error

            try:
                return method(*args, **kwargs)
            except ToolError:
                raise
            except Exception as exc:
                refusal = sealed_data_error(exc)
                if refusal is None:
                    raise
                raise ToolError(f"{refusal.code}: {refusal.message}") from None
        return call

    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_"):
            setattr(cls, name, guarded(value))
    return cls


@_sealed_refusals
class ServiceBackend:
    """In-process: the key's principal calls the services (``manage.py mcp``, ``/mcp``)."""

    def __init__(self, principal):
        self.principal = principal

    def _call(self, function, *args, **kwargs):
        from apps.core.errors import ServiceError

        try:
            return function(self.principal, *args, **kwargs)
        except ServiceError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None

    def store(self, data):
        from apps.memories import services
        from apps.memories.representation import stored_row

        return stored_row(self._call(services.ingest, data))

    def recall(self, data):
        from apps.memories import services
        from apps.memories.representation import hit_rows

        result = self._call(services.recall, data)
        return {"namespace": result.namespace.slug, "query": result.query, "mode": result.mode,
                "results": hit_rows(result.hits)}

    def update(self, memory_id, data):
        from apps.memories import services
        from apps.memories.representation import memory_row

        return memory_row(self._call(services.update, memory_id, data))

    def forget(self, memory_id):
        from apps.memories import services

        self._call(services.delete, memory_id)

    def list_recent(self, limit):
        from apps.memories import services
        from apps.memories.representation import memory_row

        memories = list(self._call(services.list_memories)[:limit])
        return [memory_row(m) for m in memories]

    def timeline_browse(self, params):
        from apps.timeline import services
        from apps.timeline.representation import node_row

        limit = int(params.pop("limit", 20))
        return [node_row(node) for node in self._call(services.browse, params)[:limit]]

    def timeline_node(self, node_id):
        from apps.timeline import services
        from apps.timeline.representation import grip_row, node_row

        opened = self._call(services.open_node, node_id)
        return {**node_row(opened.node), "children": [node_row(c) for c in opened.children],
                "grips": [grip_row(g) for g in opened.grips]}

    def grip_expand(self, grip_id, before, after):
        from apps.memories.representation import memory_row
        from apps.timeline import services
        from apps.timeline.representation import grip_row

        found = self._call(services.expand_grip, grip_id, {"before": before, "after": after})
        return {"grip": grip_row(found.grip), "session_id": found.source.session_id,
                "before": [memory_row(m) for m in found.before],
                "source": memory_row(found.source), "after": [memory_row(m) for m in found.after]}

    def end_of_day(self, date, agent_id):
        from apps.lifecycle import digest

        return digest.digest_row(self._call(digest.end_of_day, None, date=date,
                                            agent_id=agent_id))

    def consolidate(self, params):
        from django.conf import settings

        from apps.lifecycle import consolidation
        from apps.lifecycle.representation import outcome_row

        return outcome_row(self._call(consolidation.consolidate, None, params,
                                      limit=settings.MEMORYWEB_CONSOLIDATE_MAX))


class ServerBackend:
    """Through the admin socket of the server running on this embedded data directory
    (``manage.py mcp`` beside it, apps/server/control.py): the server checks the key at
    every call and runs the tool as its principal, so the call is the server's like one
    to ``/mcp`` (its store, its events)."""

    def __init__(self, client, key: str):
        self.client, self.key = client, key

    def _call(self, tool: str, *args: Any) -> Any:
        from apps.ops.control_client import ControlError, ServerGone

        try:
            return self.client.call("mcp.call", {"key": self.key, "tool": tool, "args": list(args)})
        except ControlError as exc:
            raise ToolError(exc.message if exc.code == "tool_error" else str(exc)) from None
        except ServerGone:
            raise ToolError("unavailable: the MemoryWeb server stopped during the call; "
                            "try again.") from None

    def store(self, data):
        return self._call("store", data)

    def recall(self, data):
        return self._call("recall", data)

    def update(self, memory_id, data):
        return self._call("update", str(memory_id), data)

    def forget(self, memory_id):
        self._call("forget", str(memory_id))

    def list_recent(self, limit):
        return self._call("list_recent", int(limit))

    def timeline_browse(self, params):
        return self._call("timeline_browse", params)

    def timeline_node(self, node_id):
        return self._call("timeline_node", str(node_id))

    def grip_expand(self, grip_id, before, after):
        return self._call("grip_expand", str(grip_id), int(before), int(after))

    def end_of_day(self, date, agent_id):
        return self._call("end_of_day", date, agent_id)

    def consolidate(self, params):
        return self._call("consolidate", dict(params))


class RestBackend:
    """A thin proxy to a MemoryWeb server (seed 002's topology): the key travels as the
    bearer token, the server does everything else."""

    def __init__(self, server_url: str, key: str, timeout: float = 60):
        self.client = httpx.Client(base_url=server_url.rstrip("/"), timeout=timeout,
                                   headers={"Authorization": f"Bearer {key}"})
        self._slug: str | None = None

    def _send(self, method: str, path: str, **kwargs) -> Any:
        try:
            response = self.client.request(method, f"/api/v1/{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ToolError(f"unavailable: the MemoryWeb server did not answer ({exc}).") from None
        if response.is_redirect:  # never followed: a DELETE answered 301 deleted nothing
            raise ToolError(f"unavailable: the server redirects to {response.headers.get('location')}; "
                            "use that address as --server-url.")
        if not response.is_success:
            try:
                error = response.json()["error"]
                message = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}"
            raise ToolError(message)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ToolError("unavailable: the server's answer is not JSON (is --server-url a "
                            "MemoryWeb server?).") from None

    def store(self, data):
        return self._send("POST", "memories", json=data)

    def recall(self, data):
        body = self._send("POST", "recall", json=data)
        return {key: body[key] for key in ("namespace", "query", "mode", "results") if key in body}

    def update(self, memory_id, data):
        return self._send("PATCH", f"memories/{quote(str(memory_id), safe='')}", json=data)

    def forget(self, memory_id):
        self._send("DELETE", f"memories/{quote(str(memory_id), safe='')}")

    def list_recent(self, limit):
        return self._send("GET", "memories", params={"limit": limit})["results"]

    def timeline_browse(self, params):
        return self._send("GET", "timeline", params=params)["results"]

    def timeline_node(self, node_id):
        return self._send("GET", f"timeline/{quote(str(node_id), safe='')}")

    def grip_expand(self, grip_id, before, after):
        return self._send("GET", f"grips/{quote(str(grip_id), safe='')}/expand",
                          params={"before": before, "after": after})

    def end_of_day(self, date, agent_id):
        body = {name: value for name, value in (("date", date), ("agent_id", agent_id))
                if value is not None}
        return self._send("POST", f"namespaces/{quote(self._namespace(), safe='')}/end-of-day",
                          json=body)

    def consolidate(self, params):
        return self._send("POST", f"namespaces/{quote(self._namespace(), safe='')}/consolidate",
                          json=params)

    def _namespace(self) -> str:
        """The key's namespace, for routes that name it in the path (asked once): a
        namespace key sees exactly its own."""
        if self._slug is None:
            visible = self._send("GET", "namespaces")
            if not isinstance(visible, list) or len(visible) != 1:
                raise ToolError("invalid: this tool needs a key bound to one namespace.")
            self._slug = str(visible[0]["slug"])
        return self._slug
