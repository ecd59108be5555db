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

from asgiref.sync import sync_to_async
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from apps.mcp.backends import ServiceBackend
from apps.mcp.server import build_server


def _bearer(headers) -> str:
    value = headers.get("authorization", "") if headers else ""
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def _principal(raw: str):
    from apps.tenancy.principal import Principal
    from apps.tenancy.services import authenticate_key

    key = authenticate_key(raw) if raw else None
    return Principal.for_key(key) if key is not None else None


def _backend(ctx: Context | None) -> ServiceBackend:
    """The calling request's key, checked again per call (runs in a worker thread)."""
    principal = _principal(_bearer(ctx.headers if ctx is not None else None))
    if principal is None:
        raise ToolError("not_authenticated: send Authorization: Bearer <API key>.")
    return ServiceBackend(principal)


class McpEndpoint:
    def __init__(self) -> None:
        server = build_server(_backend)
        self.manager = StreamableHTTPSessionManager(
            app=server._lowlevel_server, stateless=True, json_response=True,
            # Bearer keys, not cookies: DNS rebinding gains an attacker nothing here.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self._running: asyncio.Future | None = None
        self._lock = asyncio.Lock()

    async def _ensure_running(self) -> None:
        if self._running is not None:
            return
        async with self._lock:
            if self._running is None:
                ready = asyncio.get_running_loop().create_future()

                async def serve() -> None:
                    async with self.manager.run():
                        ready.set_result(None)
                        await asyncio.Event().wait()  # for the life of the process

                self._task = asyncio.get_running_loop().create_task(serve())
                await ready
                self._running = ready

    async def __call__(self, scope, receive, send) -> None:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", [])}
        if await sync_to_async(_principal, thread_sensitive=False)(_bearer(headers)) is None:
            body = json.dumps({"error": {"code": "not_authenticated", "message":
                               "send Authorization: Bearer <API key> (an active MemoryWeb key)."}}
                              ).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="mcp"'),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self._ensure_running()
        await self.manager.handle_request(scope, receive, send)


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
