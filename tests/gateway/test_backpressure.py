"""A relayed stream keeps backpressure under Daphne (apps/core/backpressure.py): while the
client does not read, the gateway stops reading the upstream, so what a stalled client
leaves behind is bounded by the sockets' buffers, not by the answer's size; once the
client reads again, the whole answer arrives unchanged and in order.

The upstream here is a loopback server of the test's own that streams numbered SSE
events, each its own HTTP chunk, and counts the bytes the kernel took from it. Without
backpressure the gateway read all of it at once (the upstream finished, the answer sat in
Daphne's memory); with it, the upstream's writes block once the buffers are full.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.core.backpressure import Pacer, release
from tests.helpers.gateway import GatewaySite, gateway_site

#: The upstream's send buffer (set on its socket, so the kernel does not grow it).
UPSTREAM_SNDBUF = 256 * 1024
#: The client's receive buffer while it does not read.
CLIENT_RCVBUF = 64 * 1024


def _sysctl_max(name: str, default: int) -> int:
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return default


#: What the sockets between the upstream and the stalled client can hold: the upstream's
#: send buffer (doubled by the kernel), Daphne's receive buffer from the upstream and its
#: send buffer to the client (each at most the kernel's autotuning maximum), the client's
#: receive buffer; plus 8 MB for the user-space buffers on the way (httpx, the relay's
#: chunk, Twisted's 64 KB mark) and slack.
BOUND = (2 * UPSTREAM_SNDBUF + _sysctl_max("tcp_rmem", 6 << 20)
         + _sysctl_max("tcp_wmem", 4 << 20) + 2 * CLIENT_RCVBUF + (8 << 20))
#: The answer: twice what the buffers can hold.
TOTAL = 2 * BOUND
EVENT_PAD = "x" * 8000


def event(n: int) -> bytes:
    return f"data: {json.dumps({'n': n, 'text': EVENT_PAD})}\n\n".encode()


def events() -> Iterator[bytes]:
    n, size = 0, 0
    while size < TOTAL:
        data = event(n)
        yield data
        n, size = n + 1, size + len(data)


class BulkUpstream:
    """A chat-completions upstream whose every answer is :func:`events` as SSE."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sent = 0  # body bytes of the current answer the kernel took
        self.progress = time.monotonic()  # when ``sent`` last grew
        self.done = False  # the current answer was sent whole
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """Answer each request on the connection (the gateway keeps it alive)."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UPSTREAM_SNDBUF)
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    received = conn.recv(65536)
                    if not received:
                        return
                    data += received
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self._stream(conn)
        except OSError:
            pass

    def _stream(self, conn: socket.socket) -> None:
        self.sent, self.done, self.progress = 0, False, time.monotonic()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for data in events():
            conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            self.sent += len(data)
            self.progress = time.monotonic()
        conn.sendall(b"0\r\n\r\n")
        self.done = True

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture(scope="module")
def bulk(tmp_path_factory) -> Iterator[tuple[GatewaySite, BulkUpstream]]:
    upstream = BulkUpstream()
    try:
        with gateway_site(tmp_path_factory.mktemp("backpressure"), anthropic=False,
                          MEMORYWEB_GATEWAY_OPENAI_URL=upstream.url) as found:
            yield found, upstream
    finally:
        upstream.close()


def _stalled(upstream: BulkUpstream, quiet: float = 1.0) -> bool:
    """The upstream's writes have blocked for ``quiet`` seconds (nothing reads them)."""
    return time.monotonic() - upstream.progress > quiet


def _expected() -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for data in events():
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()


def _stall_then_read(client: httpx.Client, site: GatewaySite, upstream: BulkUpstream
                     ) -> tuple[int, str, tuple]:
    """One streamed answer: read its first bytes, stop reading until the upstream is
    made to wait (asserting it sent at most :data:`BOUND`), then read the rest. Returns
    the bytes received, their digest, and the client's address (its connection)."""
    with client.stream(
            "POST", f"{site.openai_base}/chat/completions",
            headers={"Authorization": f"Bearer {site.keys['alpha_agent']}",
                     "X-Memory-Mode": "off"},
            json={"model": "gpt-4o", "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]}) as response:
        assert response.status_code == 200
        assert response.headers["x-memory-mode"] == "off"
        address = response.extensions["network_stream"].get_extra_info(
            "socket").getsockname()
        chunks = response.iter_bytes()
        received, size = hashlib.sha256(), 0
        for chunk in chunks:  # the first bytes, then the client stops reading
            received.update(chunk)
            size += len(chunk)
            if size >= 64 * 1024:
                break
        # While the client reads nothing: either the upstream is made to wait, or the
        # gateway reads past what any buffer on the way holds (no backpressure).
        deadline = time.monotonic() + 120
        while not (_stalled(upstream) or upstream.sent > BOUND or upstream.done):
            assert time.monotonic() < deadline, f"neither stalled nor past {BOUND} bytes"
            time.sleep(0.05)
        assert not upstream.done and upstream.sent <= BOUND, (
            f"the upstream sent {upstream.sent / 1e6:.1f} MB of {TOTAL / 1e6:.1f} MB to a "
            f"client that read {size / 1e3:.0f} KB (bound {BOUND / 1e6:.1f} MB)")
        for chunk in chunks:  # the client reads again: all of it
            received.update(chunk)
            size += len(chunk)
    assert upstream.done
    return size, received.hexdigest(), address


@pytest.mark.processes
def test_a_client_that_stops_reading_stops_the_read_from_the_upstream(bulk):
    """Twice on one kept-alive connection: each response is paced on its own."""
    site, upstream = bulk
    transport = httpx.HTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)])
    expected = _expected()
    with httpx.Client(transport=transport, timeout=60) as client:
        first = _stall_then_read(client, site, upstream)
        second = _stall_then_read(client, site, upstream)
    assert first[:2] == expected  # unchanged and in order
    assert second[:2] == expected
    assert first[2] == second[2]  # the same connection


def test_the_pacer_waits_from_pause_to_resume_or_stop():
    """Twisted's calls as the transport makes them, on the loop: ``writable`` waits while
    paused and returns on resume, and at once for good once the connection is lost."""

    async def scenario() -> None:
        pacer = Pacer()
        await asyncio.wait_for(pacer.writable(), 1)  # not paused: at once
        pacer.pauseProducing()
        waiting = asyncio.ensure_future(pacer.writable())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        pacer.resumeProducing()
        await asyncio.wait_for(waiting, 1)
        pacer.pauseProducing()
        cancelled = asyncio.ensure_future(pacer.writable())
        await asyncio.sleep(0.01)
        cancelled.cancel()  # the app's task cancelled mid-wait: no harm to the next wait
        waiting = asyncio.ensure_future(pacer.writable())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        pacer.stopProducing()  # the connection is lost
        await asyncio.wait_for(waiting, 1)
        pacer.pauseProducing()  # no pausing a stopped producer
        await asyncio.wait_for(pacer.writable(), 1)
        assert Pacer(paused=True).paused

    asyncio.run(scenario())


class _Request:
    """What ``release`` touches of Daphne's WebRequest (Twisted's Request)."""

    def __init__(self, pacer: Pacer) -> None:
        self.producer, self.channel, self._memoryweb_pacer = pacer, object(), pacer

    def unregisterProducer(self) -> None:
        self.producer = None


def test_finishing_a_request_wakes_an_app_waiting_on_its_paused_pacer():
    """Daphne's http_timeout finishes a request while the app waits for the client to
    read: the wait ends then (not at application_close_timeout)."""

    async def scenario() -> None:
        pacer = Pacer(paused=True)
        request = _Request(pacer)
        waiting = asyncio.ensure_future(pacer.writable())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        release(request)
        await asyncio.wait_for(waiting, 1)
        assert request.producer is None and pacer.stopped

    asyncio.run(scenario())
