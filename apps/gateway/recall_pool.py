"""The gateway's recalls run on threads of their own, a bounded number at a time.

A recall past its budget is abandoned by the request (it fails open) but not by its thread:
Python cannot stop a thread, so the call runs on until the memory core answers or errors
(a hung Chroma server: ``MEMORYWEB_CHROMA_TIMEOUT`` later). On the shared request pool
(apps/core/asgi.py ``request_pool``, ``MEMORYWEB_HTTP_THREADS``) eight such recalls held
every thread, and admission, REST and MCP queued behind them: the server stopped answering
(bench/gateway.py, docs/performance.md). Here they hold at most :data:`SLOTS` threads of
this pool; when every slot is taken the next request does not wait for one, it fails open
at once (reason ``busy``), so a failing core costs the gateway's clients nothing but their
memories.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_slots: threading.BoundedSemaphore | None = None


class Busy(Exception):
    """Every recall slot is taken (recalls still running past their budget)."""


def slots() -> int:
    """How many recalls may run at once: half the request threads (at least 2)."""
    return max(2, settings.MEMORYWEB_HTTP_THREADS // 2)


def _get() -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
    global _pool, _slots
    with _lock:
        if _pool is None or _slots is None:
            _pool = ThreadPoolExecutor(max_workers=slots(), thread_name_prefix="gateway-recall")
            _slots = threading.BoundedSemaphore(slots())
        return _pool, _slots


async def run(function: Callable[..., T], *args) -> T:
    """``function(*args)`` on a recall thread; :class:`Busy` at once when none is free.
    The slot is given back when the call ends, not when the caller stops waiting."""
    pool, free = _get()
    if not free.acquire(blocking=False):
        raise Busy

    def call() -> T:
        try:
            return function(*args)
        finally:
            free.release()

    try:
        submitted = pool.submit(call)
    except BaseException:  # not submitted: the slot is still ours to give back
        free.release()
        raise
    try:
        return await asyncio.shield(asyncio.wrap_future(submitted))
    except asyncio.CancelledError:  # the caller stopped waiting (its budget ran out)
        if submitted.cancel():  # it never started, so it never gives its slot back
            free.release()
        raise
