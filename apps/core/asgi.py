"""An ASGI handler that runs Django's middleware chain and sync views on a thread pool,
and the lean path that API calls with a key take through it.

Measured on this 2-core machine (recall, 2,000 memories, in-process ASGI):

* Django's stock ASGIHandler builds the middleware chain in async mode. A sync-only
  middleware (WhiteNoise, ours) forces async_to_sync, and every MiddlewareMixin in
  async mode runs process_request/process_response through sync_to_async: about a
  dozen thread hand-offs per request, ~4 ms of an ~18 ms recall.
* It also runs each request's sync code in a brand-new thread (one per
  ThreadSensitiveContext), so every request opens a new database connection and
  onnxruntime runs on a cold thread (+1.3 ms per embedding).

All our views are sync, so the chain is built in sync mode and each request runs it
whole on one thread of a long-lived pool, as a threaded WSGI server does: warm threads,
persistent connections (``CONN_MAX_AGE``). The request's whole sync part runs there in
one hand-off: the ``request_started`` signal, building the request, the chain, and (for
an ordinary response, whose body is already in memory) ``response.close()`` with its
``request_finished`` signal. Django's own ``handle`` would hop three more times for
these (``request_started.asend`` and ``response.close`` onto a thread it starts for
each request, ``log_response`` for a 4xx/5xx onto another), and its signal receivers
(``close_old_connections``) would run on that throwaway thread instead of the one that
holds the connection. A streaming response is closed after its body went out, as Django
does.

**The lean path.** A request that carries an API key (``Authorization: Bearer …``) on an
API path (:func:`apps.core.json_errors.is_api_path`) is served by a second handler whose
chain is ``MEMORYWEB_API_MIDDLEWARE``: no sessions, CSRF, messages, allauth, MFA
redirects or static files, which only people's browsers need; the key is the whole
credential (docs/performance.md, "Lean API path"). :func:`with_lean_api` chooses per
request. Both handlers share one pool (``MEMORYWEB_HTTP_THREADS``).

The server's start-up (the admin socket, the background drain, the in-process job
worker) is composed above every app, in apps/server/asgi.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

from apps.core import conf
from apps.core.json_errors import is_api_path

_main_loop: asyncio.AbstractEventLoop | None = None
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_building = threading.Lock()


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


def request_pool() -> ThreadPoolExecutor:
    """The threads every HTTP handler of this process runs requests on (the full and the
    lean chain alike): ``MEMORYWEB_HTTP_THREADS`` of them, each holding at most one
    database connection, however many handlers there are."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.MEMORYWEB_HTTP_THREADS,
                                       thread_name_prefix="http")
        return _pool


@contextmanager
def _middleware_list(names: list[str]) -> Iterator[None]:
    """``settings.MIDDLEWARE`` reads as ``names`` while a handler builds its chain.

    Django's ``load_middleware`` takes its list from that setting only. Handlers are built
    once, at start-up, before anything serves; the lock keeps two builds apart and the
    setting is put back at once.
    """
    with _building:
        previous = settings.MIDDLEWARE
        settings.MIDDLEWARE = names
        try:
            yield
        finally:
            settings.MIDDLEWARE = previous


class ThreadPoolASGIHandler(ASGIHandler):
    """Django over ASGI with a sync chain on :func:`request_pool` (see the module
    docstring). ``middleware_setting`` names the setting listing this handler's
    middleware: ``MIDDLEWARE`` (every request) or ``MEMORYWEB_API_MIDDLEWARE`` (the lean
    path)."""

    def __init__(self, middleware_setting: str = "MIDDLEWARE") -> None:
        self.middleware_setting = middleware_setting
        super().__init__()  # builds the chain: load_middleware below

    async def __call__(self, scope, receive, send):
        if _main_loop is None:
            bind_main_loop()
        return await super().__call__(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        names = list(getattr(settings, self.middleware_setting))
        if names == list(settings.MIDDLEWARE):
            super().load_middleware(is_async=False)
        else:
            with _middleware_list(names):
                super().load_middleware(is_async=False)
        self._pool = request_pool()

    async def handle(self, scope, receive, send) -> None:
        """Django's ``ASGIHandler.handle`` with the request's sync part in one hand-off to
        the pool (``_respond``). The race against the client's disconnect is Django's:
        a client that goes away cancels the wait (the pool thread finishes the request
        and closes it)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        served: list[HttpResponseBase] = []

        async def process_request() -> None:
            response = await sync_to_async(self._respond, thread_sensitive=False,
                                           executor=self._pool)(scope, body_file)
            served.append(response)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected while the body went out

        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)),
                 asyncio.create_task(process_request())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done():
                    try:
                        task.result()
                    except RequestAborted:
                        pass  # the client disconnected
                else:
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
            if served and served[0].streaming:  # closed once its body went out (or not)
                await sync_to_async(served[0].close, thread_sensitive=False,
                                    executor=self._pool)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file) -> HttpResponseBase:
        """On a pool thread: the request's signals, the request, the chain, and the close
        of an ordinary response (its body is in memory; ``request_finished`` then checks
        this thread's database connection, the one the request used)."""
        set_script_prefix(get_script_prefix(scope))
        try:
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = self.get_response(request)  # 4xx/5xx logged here too
                response._handler_class = self.__class__
                if isinstance(response, FileResponse):
                    response.block_size = self.chunk_size
            if not response.streaming:
                response.close()
            return response
        finally:
            close_old_connections()


def takes_lean_path(scope) -> bool:
    """Whether an HTTP request goes through the lean chain: an API path, an
    ``Authorization`` header whose scheme is Bearer (as Django will read it: repeated
    headers joined with commas, so the credential DRF sees decides), and no request for
    HTML (the browsable API, with DEBUG on, renders through the full chain)."""
    credentials, accept = [], b""
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"authorization":
            credentials.append(value)
        elif name == b"accept":
            accept += value
    if not credentials or b"text/html" in accept:
        return False
    scheme = b",".join(credentials).partition(b" ")[0]
    return scheme.lower() == b"bearer" and is_api_path(scope.get("path", ""))


def with_lean_api(full: ThreadPoolASGIHandler):
    """The HTTP application: API calls with a key through a handler built from
    ``MEMORYWEB_API_MIDDLEWARE``, everything else (people's pages, static files, the
    dashboard's own API calls with its session) through ``full``. ``MEMORYWEB_LEAN_API``
    off sends every request through ``full``."""
    lean = ThreadPoolASGIHandler(middleware_setting="MEMORYWEB_API_MIDDLEWARE")

    async def app(scope, receive, send):
        if conf.lean_api() and takes_lean_path(scope):
            return await lean(scope, receive, send)
        return await full(scope, receive, send)

    app.full, app.lean = full, lean
    return app
