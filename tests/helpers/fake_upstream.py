"""A fake OpenAI-compatible chat-completions upstream on loopback, for the summarizer
provider's tests (tests/core/test_summarizer_openai.py) and the rollups built through it
(tests/timeline/test_provider_rollup.py): a threading HTTP server in the test process that
answers each POST from a script (canned answers, 429s, 5xx, replies slower than the
client's timeout) and records every request, so a test can check what the provider sent
and how often. No process is started: it is a thread, stopped when the test ends.

The fixtures (``upstream``, ``provider_settings``) are in tests/plugins/fake_upstream.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: The provider's key in these tests: it must appear in the Authorization header only.
KEY = "sk-test-Zq8Lm3Vx7Rt2Np5Kw9Hy4Jb6"
MODEL = "tiny-1"


@dataclass
class Reply:
    """One scripted answer. ``body``: a dict (sent as JSON), a str (sent as is), or a
    callable given the request's JSON body that returns one of those (an answer made from
    what was asked, as a model would)."""

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a timeout test)


def chat(content: object) -> dict:
    """A chat-completions answer whose message content is ``content`` (JSON-encoded if not
    a string)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}]}


#: A source line of the provider's prompt: "[n] 2026-03-03T09:00Z label: text", or "[n]:
#: text" for a source with neither time nor label (a consolidation's members).
_SOURCE_LINE = re.compile(r"^\[(\d+)\](?: (.*?))?: (.*)$")


def sent_sources(request_body: dict) -> list[tuple[int, str, str]]:
    """The sources a request carried, as (number, "time label", text): what the upstream
    was shown."""
    user = request_body["messages"][1]["content"]
    return [(int(m.group(1)), m.group(2) or "", m.group(3))
            for m in map(_SOURCE_LINE.match, user.splitlines()) if m]


def quoting(max_parts: int = 20) -> Callable[[dict], dict]:
    """A model that answers by quoting: one part per sentence of its sources, in order (the
    first ``max_parts``), each quoted verbatim from its source — so parts, grips and
    excerpts come out of a real parse of the prompt at every level, and a changed source
    changes the summaries above it."""
    def answer(request_body: dict) -> dict:
        parts = []
        for number, _, text in sent_sources(request_body):
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                if sentence.strip() and len(parts) < max_parts:
                    quote = sentence.strip()[:200]
                    parts.append({"text": quote, "sources": [number], "quotes": [quote]})
        return chat({"parts": parts})
    return answer


class FakeUpstream:
    """Answers POSTs from ``script`` (one reply per request; the last repeats; by default a
    quoting model) and records each request's path, headers and JSON body in ``requests``."""

    def __init__(self) -> None:
        self.script: list[Reply] = [Reply(body=quoting())]
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                request = {"path": self.path, "headers": dict(self.headers),
                           "body": json.loads(raw), "raw": raw.decode()}
                with upstream._lock:  # a request's number is its place in the script
                    upstream.requests.append(request)
                    index = min(len(upstream.requests), len(upstream.script)) - 1
                reply = upstream.script[index]
                if reply.delay and upstream.closing.wait(reply.delay):
                    return
                body = reply.body(request["body"]) if callable(reply.body) else reply.body
                body = body if isinstance(body, str) else json.dumps(body)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body.encode())))
                    self.end_headers()
                    self.wfile.write(body.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.closing.is_set():
            self.closing.set()
            self.server.shutdown()
            self.server.server_close()
