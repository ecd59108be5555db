"""MCP's streamable HTTP transport at /mcp, inside the same ASGI application as the API.

Every request must carry ``Authorization: Bearer <API key>``: it is checked before the
MCP layer sees the request (401 JSON otherwise), and each tool call acts as that key's
principal through the service layer. Stateless: any Daphne process can answer any
request (no session affinity behind a load balancer). Authentication is by bearer key,
never by cookie, so a browser page cannot ride a visitor's credentials here.

Daphne does not run ASGI lifespan events, so the SDK's session manager (which needs a
running task group) is started on the server's event loop by the first request.
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from django.conf import settings
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from apps.mcp.backends import ServiceBackend
from apps.mcp.server import build_server

#: Where the endpoint leaves the request's principal for the tools (the ASGI scope).
SCOPE_KEY = "memoryweb.principal"


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
    request = ctx.request_context.request if ctx is not None else None
    principal = getattr(request, "scope", {}).get(SCOPE_KEY) if request is not None else None
    if principal is None:
        raise ToolError("authentication_failed: Invalid, expired or revoked API key.")
    return ServiceBackend(principal)


class McpEndpoint:
    def __init__(self) -> None:
        self.server = build_server(_backend)
        self.manager: StreamableHTTPSessionManager | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def _new_manager(self) -> StreamableHTTPSessionManager:
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
            body = json.dumps({"error": {"code": "not_authenticated", "message":
                               "send Authorization: Bearer <API key> (an active MemoryWeb key)."}}
                              ).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="mcp"'),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        manager = await self._ensure_running()
        await manager.handle_request({**scope, SCOPE_KEY: principal}, receive, send)


def mcp_router(django_app):
    """HTTP: /mcp to the MCP endpoint, everything else to Django."""
    endpoint = McpEndpoint()

    async def route(scope, receive, send):
        path = scope.get("path", "")
        if path == "/mcp" or path.startswith("/mcp/"):
            await endpoint(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return route
