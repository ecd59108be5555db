"""MCP's streamable HTTP transport at /mcp, inside the same ASGI application as the API.

Every request must carry ``Authorization: Bearer <API key>``: it is checked before the
MCP layer sees the request (401 JSON otherwise), and each tool call acts as that key's
principal through the service layer. Stateless: any Daphne process can answer any
request (no session affinity behind a load balancer). Authentication is by bearer key,
never by cookie, so a browser page cannot ride a visitor's credentials here.

Daphne does not run ASGI lifespan events, so the SDK's session manager (which needs a
running task group) is started on the server's event loop by the first request.

Before the SDK sees a POST, this door reads its body (at most ``max_body_bytes``) once:

* JSON nested deeper than ``MEMORYWEB_MAX_JSON_DEPTH`` is a JSON-RPC parse error (-32700,
  HTTP 400), as on every other door (apps/core/parsers.py);
* each ``tools/call`` in it draws one unit from the key's rate budget, the one REST and
  the WebSocket draw from (apps/tenancy/budget.py); over it: HTTP 429 with
  ``Retry-After`` and a JSON-RPC error (code -32029, ``data.code`` "rate_limited") that
  the SDK's client raises as an ``MCPError``. ``initialize``, ``tools/list``, ``ping``
  and notifications are not charged: they do no work on anyone's data.

``GET /mcp`` (the optional server-to-client stream) answers 405 at once. In stateless mode
nothing can ever be sent on such a stream (each request has its own short-lived
transport), so holding it open only cost a connection per GET, without limit, even after
the key was revoked; and a GET accepting ``*/*`` waited 15 s for the stream's first
keep-alive before any header arrived. The MCP specification allows exactly this answer,
and the SDK clients take it to mean "no stream", so there are no open streams to cap or
to end when a key is revoked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from apps.core.parsers import JSONTooDeep
from apps.core.parsers import loads as parse_json
from apps.tenancy import budget

if TYPE_CHECKING:  # the MCP SDK is imported by the first /mcp request (mcp_router)
    from mcp.server.mcpserver import Context
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from apps.mcp.backends import ServiceBackend

logger = logging.getLogger(__name__)

#: Where the endpoint leaves the request's principal for the tools (the ASGI scope).
SCOPE_KEY = "memoryweb.principal"
#: JSON-RPC error code for "over the rate budget" (the implementation-defined server range;
#: -32000 and -32001 are the SDK's own).
RATE_LIMITED = -32029
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def _bearer(scope) -> str | None:
    """The bearer credential, or None if there is not exactly one Authorization header."""
    values = [value for name, value in scope.get("headers", []) if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, credential = values[0].decode("latin-1").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def principal_for_key(raw: str | None):
    """The key's principal (hashed lookup, constant-time compare), or None."""
    from apps.tenancy.principal import Principal
    from apps.tenancy.services import authenticate_key

    key = authenticate_key(raw) if raw else None
    return Principal.for_key(key) if key is not None else None


def _backend(ctx: Context | None) -> ServiceBackend:
    """The principal the endpoint authenticated for this very request."""
    from mcp.server.mcpserver.exceptions import ToolError

    from apps.mcp.backends import ServiceBackend

    request = ctx.request_context.request if ctx is not None else None
    principal = getattr(request, "scope", {}).get(SCOPE_KEY) if request is not None else None
    if principal is None:
        raise ToolError("authentication_failed: Invalid, expired or revoked API key.")
    return ServiceBackend(principal)


class McpEndpoint:
    """The SDK's server and its session manager. Built by the first /mcp request, in a
    worker thread: importing the SDK (its pydantic models) is about a third of a Daphne
    process's start-up CPU, which a server nobody reaches over MCP never needs."""

    def __init__(self) -> None:
        from apps.mcp.server import build_server

        self.server = build_server(_backend)
        self.manager: StreamableHTTPSessionManager | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def _new_manager(self) -> StreamableHTTPSessionManager:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        return StreamableHTTPSessionManager(
            app=self.server._lowlevel_server, stateless=True, json_response=True,
            max_request_body_size=settings.MEMORYWEB_LIMITS["max_body_bytes"],
            # Bearer keys, not cookies: DNS rebinding gains an attacker nothing here.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    async def _ensure_running(self) -> StreamableHTTPSessionManager:
        """The session manager, running; (re)started if it is not (first request, or its
        task ended)."""
        if self._task is not None and not self._task.done() and self.manager is not None:
            return self.manager
        async with self._lock:
            if self._task is None or self._task.done():
                manager, ready = self._new_manager(), asyncio.get_running_loop().create_future()

                async def serve() -> None:
                    try:
                        async with manager.run():
                            ready.set_result(None)
                            await asyncio.Event().wait()  # for the life of the process
                    except BaseException as exc:
                        if not ready.done():
                            ready.set_exception(exc)
                        raise

                self._task = asyncio.get_running_loop().create_task(serve())
                await ready
                self.manager = manager
        return self.manager

    async def __call__(self, scope, receive, send) -> None:
        principal = await database_sync_to_async(principal_for_key, thread_sensitive=False)(
            _bearer(scope))
        if principal is None:
            await _answer(send, 401, {"error": {"code": "not_authenticated", "message":
                          "send Authorization: Bearer <API key> (an active MemoryWeb key)."}},
                          [(b"www-authenticate", b'Bearer realm="mcp"')])
            return
        method = scope.get("method")
        if method == "GET":
            await _answer(send, 405, {"error": {"code": "method_not_allowed", "message":
                          "GET /mcp opens no stream: this server is stateless and answers "
                          "every request on its POST."}}, [(b"allow", b"POST")])
            return
        if method == "POST":
            body = await _read_body(receive, settings.MEMORYWEB_LIMITS["max_body_bytes"])
            if body is None:
                await _answer(send, 413, _rpc_error(None, INVALID_REQUEST,
                              "Request body is larger than the limit "
                              f"({settings.MEMORYWEB_LIMITS['max_body_bytes']} bytes)."))
                return
            refusal = await sync_to_async(_admit, thread_sensitive=False)(body, principal.label)
            if refusal is not None:
                await _answer(send, *refusal)
                return
            receive = _replay(body, receive)
        manager = await self._ensure_running()
        await manager.handle_request({**scope, SCOPE_KEY: principal}, receive, send)


async def _answer(send, status: int, payload: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _rpc_error(request_id: Any, code: int, message: str,
               data: dict[str, Any] | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message, **({"data": data} if data else {})}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the SDK sees an empty body and answers
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the SDK the body already read, then the real stream (for
    the client's disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _admit(body: bytes, label: str) -> tuple[int, dict[str, Any], list] | None:
    """None to let the request through, else (status, JSON-RPC error, headers). On a worker
    thread: parsing a large body and the budget's cache round trips stay off the loop."""
    try:
        message = parse_json(body)
    except JSONTooDeep as exc:
        return 400, _rpc_error(None, PARSE_ERROR, f"Parse error: {exc}"), []
    except ValueError as exc:
        # Fail closed: text this parser refuses is never handed on. The SDK's own parser
        # is laxer (it takes NaN and Infinity), so a body refused here but read there was
        # a tools/call that drew nothing from the budget.
        return 400, _rpc_error(None, PARSE_ERROR, f"Parse error: {exc}"), []
    calls = [m for m in (message if isinstance(message, list) else [message])
             if isinstance(m, dict) and m.get("method") == "tools/call"]
    if not calls:
        return None
    verdict = budget.draw(label, len(calls))
    if verdict.allowed:
        return None
    wait = verdict.retry_after_seconds
    request_id = calls[0].get("id") if isinstance(calls[0].get("id"), (str, int)) else None
    error = _rpc_error(request_id, RATE_LIMITED,
                       f"rate_limited: the rate limit ({verdict.rate}, shared with the REST "
                       f"API and the WebSocket) is used up; retry in {wait} s.",
                       {"code": "rate_limited", "retry_after": wait})
    return 429, error, [(b"retry-after", str(wait).encode())]


def mcp_router(django_app):
    """HTTP: /mcp to the MCP endpoint, everything else to Django.

    The endpoint (and the SDK) is made by the first /mcp request, off the event loop, by
    one task that the requests arriving meanwhile wait on (shielded: a client that goes
    away does not cancel it). If it fails, those requests get a 503 JSON error, the
    failure is logged, and the next request tries again."""
    built: McpEndpoint | None = None
    building: asyncio.Future | None = None

    async def endpoint() -> McpEndpoint:
        nonlocal built, building
        if built is None:
            if building is None:
                building = asyncio.ensure_future(asyncio.to_thread(McpEndpoint))
            task = building
            try:
                built = await asyncio.shield(task)
            finally:
                if building is task and task.done():
                    building = None  # built, or failed: the next request tries again
        return built

    async def route(scope, receive, send):
        path = scope.get("path", "")
        if not (path == "/mcp" or path.startswith("/mcp/")):
            await django_app(scope, receive, send)
            return
        try:
            handler = await endpoint()
        except Exception:
            logger.exception("the MCP endpoint could not be built")
            await _answer(send, 503, {"error": {"code": "mcp_unavailable", "message":
                          "MCP over HTTP is unavailable on this server; see its log."}})
            return
        await handler(scope, receive, send)

    return route
