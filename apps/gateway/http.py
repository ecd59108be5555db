"""The memory gateway's routes under /proxy/, an ASGI endpoint on the server's event loop.

Why not Django views: the project's Django handler runs every view on a pool thread
(apps/core/asgi.py); an async view there would hold that thread until the upstream
answered, and a model's answer takes seconds to minutes. So, as /mcp does, the gateway
sits in front of Django in the ASGI application (memoryweb/asgi.py): the request is
read on the loop, the short sync parts (authenticating the key, the rate budget, the
mode, the recall) run on the request pool's threads, and the upstream call and the relay
of its answer are awaited on the loop with the process's one ``httpx.AsyncClient`` — no
thread per request or stream.

The relay (apps/gateway/relay.py) hands a stream to the server chunk by chunk, reading
the next from the upstream once ``send`` returned — under Daphne only when the client
takes more, as memoryweb/asgi.py installs apps/core/backpressure.py (Daphne's own
``send`` returns at once and would buffer the whole answer for a stalled client) — and
a JSON answer whole, unchanged: the same status, headers (less hop-by-hop ones) and
bytes. An upstream that breaks off mid-answer is never relayed as a clean end: a stream
ends with an error event the SDKs raise, a JSON answer becomes a 502. A client that goes
away closes the upstream request.

Per request: read the body (at most ``max_body_bytes``), admit the key (401, 429),
decide the memory mode, recall within ``MEMORYWEB_GATEWAY_RECALL_BUDGET_MS`` and inject
(apps/gateway/injection.py), forward. If the recall fails or is too slow, the request goes
on unchanged (fail-open: ``X-Memory-Fail-Open``, logged and counted). When the mode stores,
the relay also shows each chunk, after sending it, to an ``AnswerTap``
(apps/gateway/answers.py), and once the answer is complete the exchange is queued for
learning (apps/gateway/learning.py): after the last chunk, so the answer is never delayed.
A namespace that opted in (``gateway.trace``) gets a trace of the request written the same
way, after the answer (apps/gateway/traces.py). docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.core.asgi import request_pool
from apps.core.parsers import JSONTooDeep
from apps.core.parsers import loads as parse_json

from . import (
    answers,
    debug_stats,
    injection,
    learning,
    memory,
    metrics,
    recall_pool,
    relay,
    traces,
    upstream,
)
from .memory import Admission

logger = logging.getLogger("memoryweb.gateway")

PREFIX = "/proxy/"
#: A model id in /proxy/v1/models/{id}: one path segment (fine-tuned ids hold ':' and '.').
MODEL_ID = re.compile(r"[A-Za-z0-9._:@+-]{1,200}")
#: Request headers that name the client's session (learned facts keep it), first found wins.
SESSION_HEADERS = ("x-memory-session", "x-claude-code-session-id", "session_id")


@dataclass(frozen=True)
class Route:
    api: str  # chat | responses | models | anthropic
    provider: upstream.Provider
    method: str
    upstream_path: str


def route_for(path: str) -> Route | None:
    """The route of a /proxy/ path (None: not one of the gateway's)."""
    if path == "/proxy/v1/chat/completions":
        return Route("chat", upstream.OPENAI, "POST", "/chat/completions")
    if path == "/proxy/v1/responses":
        return Route("responses", upstream.OPENAI, "POST", "/responses")
    if path == "/proxy/v1/models":
        return Route("models", upstream.OPENAI, "GET", "/models")
    if path.startswith("/proxy/v1/models/"):
        # Exactly one model id: never a path that walks out of /models (``..``, decoded
        # from %2e%2e by the server) to another upstream endpoint with the server's key.
        model = path[len("/proxy/v1/models/"):]
        if not MODEL_ID.fullmatch(model) or model in (".", ".."):
            return None
        return Route("models", upstream.OPENAI, "GET", "/models/" + quote(model, safe=":@+"))
    # Seed 003 documents ANTHROPIC_BASE_URL=.../proxy/anthropic/v1, to which the SDKs add
    # /v1/messages: both spellings are the one route.
    if path in ("/proxy/anthropic/v1/messages", "/proxy/anthropic/v1/v1/messages"):
        return Route("anthropic", upstream.ANTHROPIC, "POST", "/v1/messages")
    if path == "/proxy/v1/debug/stats":  # the gateway's own answer (debug_stats.py)
        return Route("stats", upstream.OPENAI, "GET", "")
    return None


# --- answers of the gateway's own -----------------------------------------------------

def _error_body(api: str, status: int, kind: str, message: str) -> bytes:
    """An error in the shape the client's SDK reads (OpenAI's or Anthropic's)."""
    if api == "anthropic":
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "code": kind, "param": None}}
    return json.dumps(payload).encode()


async def _answer(send, api: str, status: int, kind: str, message: str,
                  headers: dict[str, str] | None = None) -> None:
    await _send_json(send, status, _error_body(api, status, kind, message), headers)


async def _send_json(send, status: int, body: bytes,
                     headers: dict[str, str] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body; None once it exceeds ``limit`` bytes or the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())}


def _memoryweb_key(api: str, headers: dict[str, str]) -> str | None:
    """Where the client's SDK put the provider key: ``x-api-key`` (Anthropic), else
    ``Authorization: Bearer`` (OpenAI; Anthropic clients using an auth token)."""
    if api == "anthropic" and headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    scheme, _, raw = headers.get("authorization", "").partition(" ")
    return raw.strip() if scheme.lower() == "bearer" and raw.strip() else None


# --- the endpoint ---------------------------------------------------------------------

async def _on_pool(function, *args):
    return await sync_to_async(function, thread_sensitive=False, executor=request_pool())(*args)


def forward_reserve(budget: float) -> float:
    """Seconds of the budget kept for what follows a recall that fails open (building and
    sending the request upstream): 5% of it, at least 10 ms, so the gateway's added
    latency stays within the budget even when the memory core hangs."""
    return min(budget, max(0.010, 0.05 * budget))


async def _memories(route: Route, admission: Admission, body: dict[str, Any], started: float
                    ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The body with memories injected (None: forward the original bytes) and the response
    headers that say what happened. Fail-open: any failure or a recall over its budget
    forwards the request unchanged."""
    decision = admission.decision
    told = {"x-memory-mode": decision.mode, "x-memory-injected": "0"}
    if not decision.recall:
        return None, told
    query = injection.query_of(route.api, body)
    if not query:
        return None, told
    if admission.fail_open:  # admitted without the database: no recall can work now
        return None, {**told, **_failed_open(route, admission.fail_open, admission.failure)}
    # One deadline from the request's arrival: admission's time counts against the budget,
    # and the forward after a fail-open is kept inside it (forward_reserve).
    budget = settings.MEMORYWEB_GATEWAY_RECALL_BUDGET_MS / 1000
    left = budget - forward_reserve(budget) - (time.perf_counter() - started)
    if left <= 0:
        return None, {**told, **_failed_open(route, "timeout", None)}
    try:
        recalled = await asyncio.wait_for(recall_pool.run(memory.recall, admission, query), left)
    except TimeoutError:
        return None, {**told, **_failed_open(route, "timeout", None)}
    except recall_pool.Busy:  # recalls past their budget still hold every recall thread
        return None, {**told, **_failed_open(route, "busy", None)}
    except Exception as exc:  # any failure of the memory core: the client still gets its answer
        return None, {**told, **_failed_open(route, "error", exc)}
    if recalled.screened_out:
        metrics.SCREENED_OUT.inc(recalled.screened_out)
        told["x-memory-screened"] = str(recalled.screened_out)
    chosen = injection.fit(recalled.candidates, injection.token_budget(
        body.get("model"), settings.MEMORYWEB_GATEWAY_MEMORY_SHARE))
    if not chosen:
        return None, told
    metrics.INJECTED.inc(len(chosen))
    told["x-memory-injected"] = str(len(chosen))
    told["x-memory-ids"] = ",".join(c.id for c in chosen)
    return injection.inject(route.api, body, injection.render(chosen)), told


def _failed_open(route: Route, reason: str, exc: BaseException | None) -> dict[str, str]:
    metrics.FAIL_OPEN.labels(route=route.api, reason=reason).inc()
    # The error's type only: a message could quote the prompt (the query).
    logger.warning("gateway fail-open on %s: recall %s%s", route.api, reason,
                   f" ({type(exc).__name__})" if exc is not None else "")
    return {"x-memory-fail-open": reason}


async def gateway(scope, receive, send) -> None:
    path = scope.get("path", "")
    route = route_for(path)
    api = route.api if route else "chat"
    if route is None:
        await _answer(send, api, 404, "not_found_error", f"no gateway route {path[:200]!r}.")
        return
    if scope.get("method") != route.method:
        await _answer(send, api, 405, "invalid_request_error",
                      f"{path} takes {route.method}.", {"allow": route.method})
        return
    headers = _headers(scope)
    body = b""
    if route.method == "POST":
        read = await _read_body(receive, settings.MEMORYWEB_LIMITS["max_body_bytes"])
        if read is None:
            await _answer(send, api, 413, "request_too_large", "Request body is larger than "
                          f"the limit ({settings.MEMORYWEB_LIMITS['max_body_bytes']} bytes).")
            return
        body = read
    started = time.perf_counter()  # the gateway's own time: admission + recall + injection
    budget = settings.MEMORYWEB_GATEWAY_RECALL_BUDGET_MS / 1000
    try:  # a key the gateway has seen waits for the database at most until the deadline
        admission = await memory.admit_within(_memoryweb_key(api, headers), headers,
                                              route.api not in ("models", "stats"),
                                              budget - forward_reserve(budget))
    except Exception as exc:  # the key cannot be checked: never forward unauthenticated
        logger.error("gateway: the key could not be checked (%s)", type(exc).__name__)
        await _answer(send, api, 503, "memoryweb_unavailable",
                      "MemoryWeb cannot check the key right now; retry shortly.")
        return
    if admission.refusal is not None:
        status, kind, message, extra = admission.refusal
        await _answer(send, api, status, kind, message, extra)
        return
    if route.api == "stats":
        if admission.fail_open:  # its numbers are in the database, which is down
            await _answer(send, api, 503, "memoryweb_unavailable",
                          "MemoryWeb's database is unavailable; retry shortly.")
            return
        status, answer = await _on_pool(debug_stats.stats, admission, headers)
        await _send_json(send, status, json.dumps(answer).encode())
        return
    decision = admission.decision
    metrics.REQUESTS.labels(route=route.api, mode=decision.mode if decision else "none").inc()
    # The namespace's own upstream, if it has one (the models route has no memory, so no
    # resolved namespace: the key's own namespace decides).
    namespace = admission.namespace or getattr(admission.principal, "namespace", None)
    try:
        target = upstream.target(route.provider, namespace,
                                 headers.get(upstream.UPSTREAM_AUTH_HEADER))
    except OSError:
        logger.error("gateway: the %s upstream key file cannot be read", route.provider.name)
        await _answer(send, api, 503, "gateway_not_configured",
                      f"the gateway's {route.provider.name} key file cannot be read.")
        return
    if not target.base_url:
        await _answer(send, api, 503, "gateway_not_configured",
                      f"the gateway's {route.provider.name} upstream is not configured "
                      f"({route.provider.url_setting} is empty).")
        return
    told: dict[str, str] = {}
    lesson = None
    # With the database down (admitted as remembered) a trace could not be written.
    level = (traces.level_of(admission.namespace)
             if route.api != "models" and not admission.fail_open else "off")
    query, parsed = "", {}
    if route.api != "models":
        try:
            parsed = parse_json(body)
        except (JSONTooDeep, ValueError) as exc:
            await _answer(send, api, 400, "invalid_request_error", f"the body is not JSON: {exc}")
            return
        if not isinstance(parsed, dict):
            await _answer(send, api, 400, "invalid_request_error", "the body must be an object.")
            return
        lesson = _lesson(route, admission, headers, parsed)
        if level == traces.CONTENT and decision is not None and decision.recall:
            query = injection.query_of(route.api, parsed)
        injected, told = await _memories(route, admission, parsed, started)
        if injected is not None:
            body = json.dumps(injected, ensure_ascii=False).encode()
    added = time.perf_counter() - started
    metrics.ADDED_LATENCY.labels(route=route.api).observe(added)
    status = await _forward(scope, receive, send, route, target, body, told, lesson)
    if level in traces.RECORDED:  # after the answer: a trace never delays it
        await _trace(traces.Trace(
            namespace=admission.namespace, level=level, api=route.api,
            model=str(parsed.get("model") or ""), mode=told.get("x-memory-mode", ""),
            agent_id=getattr(admission.principal, "agent_id", "") or "",
            injected=int(told.get("x-memory-injected", "0")),
            memory_ids=tuple(i for i in told.get("x-memory-ids", "").split(",") if i),
            screened_out=int(told.get("x-memory-screened", "0")),
            fail_open=told.get("x-memory-fail-open", ""), added_ms=added * 1000,
            upstream_status=status, query=query))


async def _trace(trace: traces.Trace) -> None:
    """Write the request's trace on a pool thread; a failure is logged, never the client's."""
    try:
        await _on_pool(traces.record, trace)
    except Exception as exc:
        logger.warning("gateway: the request's trace could not be written (%s)",
                       type(exc).__name__)


@dataclass(frozen=True)
class Lesson:
    """What to learn from once the answer is relayed: who taught it and the user's turn."""

    taught: learning.Taught
    user_text: str


def _lesson(route: Route, admission: Admission, headers: dict[str, str],
            body: dict[str, Any]) -> Lesson | None:
    """The exchange's lesson when its mode stores (``full``, ``after``; never ``readonly``,
    ``off`` or a reader key) and the request has a user turn to learn from."""
    decision = admission.decision
    if (decision is None or not decision.store or admission.principal is None
            or admission.fail_open):  # the database is down: nothing could be stored
        return None
    user_text = answers.latest_user_text(route.api, body)
    if not user_text:
        return None
    session = next((headers[name] for name in SESSION_HEADERS if headers.get(name)), "")
    return Lesson(learning.Taught(admission.principal, admission.namespace, session.strip()),
                  user_text)


async def _learn(route: Route, lesson: Lesson, tap: answers.AnswerTap) -> None:
    """Queue the exchange for learning (redacted, on a pool thread). The answer is complete
    already; a failure here is logged and counted, never the client's."""
    try:
        await _on_pool(learning.enqueue, lesson.taught, route.api, lesson.user_text, tap.text())
    except Exception as exc:
        metrics.LEARN_FAILURES.labels(stage="queue").inc()
        logger.warning("gateway: the exchange could not be queued for learning (%s)",
                       type(exc).__name__)


async def _forward(scope, receive, send, route: Route, target: upstream.Target, body: bytes,
                   told: dict[str, str], lesson: Lesson | None = None) -> int:
    """Send the request upstream and relay its answer; returns the status the client got
    (the upstream's, or the gateway's own 502 / 504)."""
    auth = target.auth
    query = scope.get("query_string", b"")
    url = target.base_url + route.upstream_path + (f"?{query.decode('latin-1')}"
                                                   if query else "")
    client = upstream.client()
    request = client.build_request(
        route.method, url, content=body if route.method == "POST" else None,
        headers={**upstream.forwarded_headers(scope.get("headers", ()), own_key=target.own),
                 **auth},
        timeout=upstream.timeout())
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("gateway: the %s upstream did not answer (%s)", route.provider.name,
                       type(exc).__name__)
        status = 504 if isinstance(exc, httpx.TimeoutException) else 502
        await _answer(send, route.api, status, "upstream_unavailable",
                      f"the {route.provider.name} upstream did not answer "
                      f"({type(exc).__name__}).", told)
        return status
    tap = (answers.AnswerTap(route.api, response.headers.get("content-type", ""),
                             response.headers.get("content-encoding", ""))
           if lesson is not None and response.status_code == 200 else None)
    relaying = asyncio.ensure_future(relay.relay(send, response, told, route.api, tap))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait([relaying, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relaying, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(relaying, gone, return_exceptions=True)
        await response.aclose()
    broke = (relaying.exception() if relaying.done() and not relaying.cancelled() else None)
    if broke is not None:  # never learned from: the answer is incomplete
        logger.warning("gateway: the %s upstream broke off mid-answer (%s)",
                       route.provider.name, broke)
        metrics.UPSTREAM_BROKE_OFF.labels(route=route.api).inc()
        if isinstance(broke, relay.BrokeOff) and not broke.started:
            await _answer(send, route.api, 502, "upstream_unavailable",
                          f"the {route.provider.name} upstream broke off mid-answer "
                          f"({type(broke.cause).__name__}).", told)
            return 502
    elif tap is not None and lesson is not None and (
            tap.complete or (relaying.done() and not relaying.cancelled())):
        await _learn(route, lesson, tap)  # after the last chunk: the answer is not delayed
    return response.status_code


async def _disconnected(receive) -> None:
    """Returns when the client goes away (the request body was read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def gateway_router(app):
    """HTTP: /proxy/... to the gateway, everything else to ``app``."""

    async def route(scope, receive, send):
        if scope.get("type") == "http" and scope.get("path", "").startswith(PREFIX):
            await gateway(scope, receive, send)
        else:
            await app(scope, receive, send)

    return route
