"""A fake LLM API on loopback for the memory gateway's tests (tests/gateway): OpenAI's
chat completions, responses and models, and Anthropic's messages, each non-streaming and
streaming (SSE), plus scripted errors and slow answers. A threading HTTP server in the
test process (no process started) that records every request it received (path, headers,
JSON body, raw bytes), so a test sees exactly what the gateway forwarded.

Base URLs: ``openai_url`` (``http://127.0.0.1:PORT/v1``) and ``anthropic_url``
(``http://127.0.0.1:PORT``; the path is ``/v1/messages``), as the real services split them.

Answers are deterministic: a chat answer's text is ``REPLY``; a streamed answer is the
pieces of :data:`PIECES` in order, one SSE event each, and :func:`sse_bytes` gives the
exact bytes sent, to compare with what a client received through the gateway.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Hello from the fake upstream."
#: A streamed answer's text pieces, one event each.
PIECES = ["Hel", "lo ", "from ", "the ", "fake ", "upstream", "."]
MODELS = {"object": "list", "data": [
    {"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "fake"},
    {"id": "gpt-4", "object": "model", "created": 1700000000, "owned_by": "fake"}]}


@dataclass
class Failure:
    """A scripted answer for the next request to ``path``: an error or a slow answer."""

    status: int = 200
    body: dict[str, Any] | None = None  # an error body; None: the normal answer
    delay: float = 0.0  # seconds before answering
    #: A long stream instead: this many SSE events, ``event_delay`` seconds apart (a client
    #: that goes away mid-stream shows in ``FakeLLM.disconnects``).
    long_stream: int = 0
    event_delay: float = 0.05
    #: The text of the next (non-streaming) answer instead of ``REPLY``: a model
    #: extractor's JSON, for the gateway's learning.
    reply: str | None = None
    #: The connection breaks off mid-answer: a stream after this many events, a JSON body
    #: after this many bytes (its Content-Length promised more) — no clean end either way.
    break_after: int | None = None


# --- the answers, as each API writes them ------------------------------------------------

def _chat(model: str, reply: str = REPLY) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,
            "model": model, "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}}


def _chat_events(model: str) -> list[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": piece},
                                     "finish_reason": None}]} for piece in PIECES]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def _response(model: str) -> dict[str, Any]:
    return {"id": "resp_fake", "object": "response", "created_at": 1700000000,
            "status": "completed", "model": model, "output": [{
                "type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 10, "output_tokens": 7, "total_tokens": 17,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def _response_events(model: str) -> list[str]:
    done = _response(model)
    started = {**done, "status": "in_progress", "output": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "sequence_number": 0,
                              "response": started})]
    for n, piece in enumerate(PIECES, start=1):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": n, "item_id": "msg_fake",
            "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}))
    events.append(("response.completed", {"type": "response.completed",
                                          "sequence_number": len(PIECES) + 1, "response": done}))
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


def _message(model: str) -> dict[str, Any]:
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": REPLY}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 7}}


def _message_events(model: str) -> list[str]:
    start = {**_message(model), "content": [], "stop_reason": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": piece}})
               for piece in PIECES]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {
                   "stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": 7}}),
               ("message_stop", {"type": "message_stop"})]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


#: path -> (non-streaming answer, streamed events), each from the request's model.
ANSWERS = {
    "/v1/chat/completions": (_chat, _chat_events),
    "/v1/responses": (_response, _response_events),
    "/v1/messages": (_message, _message_events),
}


def sse_bytes(path: str, model: str) -> bytes:
    """The exact bytes of a streamed answer to ``path`` for ``model``."""
    return "".join(ANSWERS[path][1](model)).encode()


@dataclass
class FakeLLM:
    """The server. ``requests``: what it received, in order. ``failures``: path -> the
    scripted answers for the next requests there (consumed in order)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    #: Streams whose reader (the gateway) closed the connection before their end.
    disconnects: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                fake._record(self, b"")
                if self.path.split("?")[0] == "/v1/models":
                    self._json(200, MODELS)
                else:
                    self._json(404, {"error": {"message": "no such route", "type": "not_found"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake._record(self, raw)
                path = self.path.split("?")[0]
                failure = fake._next_failure(path)
                if failure is not None and failure.delay and fake.closing.wait(failure.delay):
                    return
                if failure is not None and failure.body is not None:
                    self._json(failure.status, failure.body)
                    return
                if failure is not None and failure.long_stream:
                    self._stream([f"data: {json.dumps({'n': n})}\n\n"
                                  for n in range(failure.long_stream)], failure.event_delay)
                    return
                if path not in ANSWERS:
                    self._json(404, {"error": {"message": "no such route", "type": "not_found"}})
                    return
                body = json.loads(raw)
                answer, events = ANSWERS[path]
                cut = failure.break_after if failure is not None else None
                if body.get("stream"):
                    self._stream(events(body.get("model", "")), cut=cut)
                elif cut is not None:
                    self._json(200, answer(body.get("model", "")), cut=cut)
                elif failure is not None and failure.reply is not None and path == \
                        "/v1/chat/completions":
                    self._json(200, _chat(body.get("model", ""), failure.reply))
                else:
                    self._json(200, answer(body.get("model", "")))

            def _json(self, status: int, payload: dict[str, Any], cut: int | None = None
                      ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Fake-Upstream", "yes")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data if cut is None else data[:cut])
                    if cut is not None:
                        self._break()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _break(self) -> None:
                """Drop the connection without finishing the answer."""
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _stream(self, events: list[str], delay: float = 0.005,
                        cut: int | None = None) -> None:
                """Each event in its own HTTP chunk, flushed, a moment apart: the client
                sees them arrive one by one."""
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.send_header("X-Fake-Upstream", "yes")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for sent, event in enumerate(events):
                        if sent == cut:
                            self._break()
                            return
                        data = event.encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        if fake.closing.wait(delay):
                            return
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with fake._lock:
                        fake.disconnects += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append({"method": handler.command, "path": handler.path,
                                  "headers": {k.lower(): v for k, v in handler.headers.items()},
                                  "body": body, "raw": raw})

    def _next_failure(self, path: str) -> Failure | None:
        with self._lock:
            queue = self.failures.get(path)
            return queue.pop(0) if queue else None

    def last(self) -> dict[str, Any]:
        with self._lock:
            assert self.requests, "the fake upstream received no request"
            return self.requests[-1]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
