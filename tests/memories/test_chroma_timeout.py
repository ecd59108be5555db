"""A Chroma server that accepts connections and never answers is an error after
MEMORYWEB_CHROMA_TIMEOUT, not a thread held for ever (apps/memories/chroma_http.py):
while the client is built, and on every request after."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.test import override_settings

from apps.memories.chroma_http import http_client

#: What a Chroma 1.x server answers while chromadb builds its client.
_ANSWERS = {
    "/api/v2/heartbeat": {"nanosecond heartbeat": 1},
    "/api/v2/auth/identity": {"user_id": "", "tenant": "default_tenant",
                              "databases": ["default_database"]},
    "/api/v2/tenants/default_tenant": {"name": "default_tenant"},
    "/api/v2/tenants/default_tenant/databases/default_database": {
        "id": str(uuid.uuid4()), "name": "default_database", "tenant": "default_tenant"},
}


@pytest.fixture
def chroma() -> Iterator[tuple[int, threading.Event]]:
    """A fake Chroma server on loopback: answers what the client asks while it is built
    (unless ``silent`` is set), and holds every other request without an answer."""
    silent = threading.Event()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            answer = _ANSWERS.get(self.path)
            if silent.is_set() or answer is None:
                release.wait(120)  # a hung server: the connection stays open, no answer
                return
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1], silent
    release.set()
    server.shutdown()
    server.server_close()


def _outcome(call: Callable[[], object]) -> BaseException | None:
    """What ``call`` raised (None: it returned), run on a thread with a liveness guard:
    without a timeout the call would never end."""
    found: dict[str, BaseException | None] = {}

    def run():
        try:
            call()
            found["error"] = None
        except BaseException as exc:  # the test inspects it
            found["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(90)
    assert not thread.is_alive(), "the client waited for the silent server for ever"
    return found["error"]


def _timed_out(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, httpx.TimeoutException):
            return True
        error = error.__cause__ or error.__context__
    return False


def test_a_silent_server_is_an_error_while_the_client_is_built(chroma):
    port, silent = chroma
    silent.set()
    with override_settings(MEMORYWEB_CHROMA_TIMEOUT=0.5):
        error = _outcome(lambda: http_client("127.0.0.1", port, False))
    assert _timed_out(error), repr(error)


def test_a_server_that_goes_silent_is_an_error_on_each_request(chroma):
    port, _ = chroma
    with override_settings(MEMORYWEB_CHROMA_TIMEOUT=0.5):
        client = http_client("127.0.0.1", port, False)
    session = client._server._session  # where chromadb keeps it
    assert (session.timeout.read, session.timeout.connect) == (0.5, 0.5)
    # Collections are not in the fake's answers: the server holds the request.
    error = _outcome(lambda: client.list_collections())
    assert _timed_out(error), repr(error)
