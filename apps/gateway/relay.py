"""The upstream's answer to the client, and what the client is told when the upstream
breaks off in the middle of it.

A stream (``text/event-stream``) is relayed chunk by chunk, unchanged, each handed to
the server (``await send``) before the next is read from the upstream. That keeps
backpressure only because ``send`` waits while the client is not reading: uvicorn's and
hypercorn's do; Daphne's returns at once (it buffers the bytes in the process) unless
paced by apps/core/backpressure.py, which memoryweb/asgi.py installs. Paced, a client
that stops reading stops the read from the upstream, and a stalled client leaves at most
what the sockets on the way buffer (measured: 10 MB of a 210 MB stream; unpaced, all of
it, in Daphne's memory).

If the upstream's connection breaks mid-stream, the client must not see a clean end — an
SDK would take the half answer for a whole one — so the stream is closed with one error
event in the API's own format, which the official SDKs raise as an error (OpenAI: a
``data`` event holding ``error``; Anthropic: ``event: error``).

Any other answer (a JSON body) is read whole before anything is sent (bounded by
:data:`WHOLE_MAX`): it is one document the client cannot use before its end anyway, and a
break then becomes the gateway's own 502 instead of a truncated body under the upstream's
``Content-Length`` (on which a client would wait for bytes that never come).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from . import answers, upstream

#: The largest non-streamed answer read whole before relaying; past it, the rest streams.
WHOLE_MAX = 64 * 1024 * 1024


class BrokeOff(Exception):
    """The upstream's answer broke off; ``started``: the client already has the status
    (a stream, closed with an error event) or not (the caller answers 502)."""

    def __init__(self, started: bool, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.started = started
        self.cause = cause


def is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip().lower() == \
        "text/event-stream"


def error_event(api: str, message: str) -> bytes:
    """One SSE event that the API's SDK raises as an error."""
    if api == "anthropic":
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    error = {"message": message, "type": "upstream_error", "code": "upstream_broke_off"}
    if api == "responses":  # the Responses API's error event, with the SDKs' error object
        data: dict[str, Any] = {"type": "error", "code": error["code"], "message": message,
                                "param": None, "error": error}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    return f"data: {json.dumps({'error': error})}\n\n".encode()


async def relay(send, response: httpx.Response, told: dict[str, str], api: str,
                tap: answers.AnswerTap | None = None) -> None:
    """Status, headers, then the body (each chunk also shown to ``tap`` once sent, for
    learning). Raises :class:`BrokeOff` when the upstream breaks off."""
    headers = upstream.relayed_headers(response) + [
        (name.encode(), value.encode()) for name, value in told.items()]
    chunks = response.aiter_raw()
    held: list[bytes] = []
    streaming = is_stream(response)
    if not streaming:
        size = 0
        try:
            async for chunk in chunks:
                held.append(chunk)
                size += len(chunk)
                if size > WHOLE_MAX:
                    break
            else:
                chunks = None
        except httpx.HTTPError as exc:
            raise BrokeOff(False, exc) from exc
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": headers})
    for chunk in held:
        await _send(send, chunk, tap)
    if chunks is not None:
        try:
            async for chunk in chunks:
                await _send(send, chunk, tap)
        except httpx.HTTPError as exc:
            if streaming:
                await send({"type": "http.response.body", "more_body": True,
                            "body": error_event(api, "the upstream broke off mid-answer "
                                                f"({type(exc).__name__}); the answer is "
                                                "incomplete.")})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            raise BrokeOff(True, exc) from exc
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send(send, chunk: bytes, tap: answers.AnswerTap | None) -> None:
    """One chunk to the client; returns when the server takes the next (the module's
    docstring: under Daphne, once apps/core/backpressure.py paces ``send``)."""
    if chunk:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if tap is not None:
            tap.feed(chunk)
