"""An ASGI handler that runs Django's middleware chain and sync views on a thread pool.

Measured on this 2-core machine (recall, 2,000 memories, in-process ASGI):

* Django's stock ASGIHandler builds the middleware chain in async mode. A sync-only
  middleware (WhiteNoise, ours) forces async_to_sync, and every MiddlewareMixin in
  async mode runs process_request/process_response through sync_to_async: about a
  dozen thread hand-offs per request, ~4 ms of an ~18 ms recall.
* It also runs each request's sync code in a brand-new thread (one per
  ThreadSensitiveContext), so every request opens a new database connection and
  onnxruntime runs on a cold thread (+1.3 ms per embedding).

All our views are sync, so the chain is built in sync mode and each request runs it
whole on one thread of a long-lived pool, as a threaded WSGI server does: one hand-off,
warm threads, persistent connections (``CONN_MAX_AGE``). Because the request_started /
request_finished signals fire on another thread under ASGI, the pool thread closes
stale or broken connections itself around each request, which is what those signals
do for it under WSGI.

The server's start-up (the admin socket, the background drain, the in-process job
worker) is composed above every app, in apps/server/asgi.py.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse

_main_loop: asyncio.AbstractEventLoop | None = None


def main_loop() -> asyncio.AbstractEventLoop | None:
    """The server's event loop (Daphne's), once it has received its first connection of
    any protocol (recording_main_loop); None in management commands and the WSGI test
    client. Sync code on the request threads hands coroutines to it (apps.live.events)
    without waiting for them."""
    return _main_loop


def bind_main_loop() -> None:
    global _main_loop
    _main_loop = asyncio.get_running_loop()


def recording_main_loop(application):
    """``application`` (the top-level protocol router), recording the event loop at the
    first connection of any protocol. A WebSocket ``ingest`` or an ``/mcp`` store can be
    a fresh server's first traffic: its live event must find the loop (the feeds'
    in-process channel layer lives on it), not take the way a command's event takes."""

    async def app(scope, receive, send):
        if _main_loop is None:
            bind_main_loop()
        return await application(scope, receive, send)

    return app


class ThreadPoolASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if _main_loop is None:
            bind_main_loop()
        return await super().__call__(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain = self._middleware_chain
        self._pool = ThreadPoolExecutor(
            max_workers=settings.MEMORYWEB_HTTP_THREADS, thread_name_prefix="http"
        )

        def run(request: HttpRequest) -> HttpResponse:
            close_old_connections()
            try:
                return chain(request)
            finally:
                close_old_connections()

        self._middleware_chain = sync_to_async(run, thread_sensitive=False, executor=self._pool)
