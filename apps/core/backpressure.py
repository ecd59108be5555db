"""Backpressure for HTTP response bodies under Daphne: ``await send(body)`` waits while
the client is not reading.

Daphne (4.2) writes each ``http.response.body`` message into Twisted's transport buffer
and returns from ``send`` at once, whether or not the client reads. An app that relays
a stream (the memory gateway, apps/gateway/relay.py) therefore reads its source as fast
as the source writes: a client that stalls leaves the whole answer buffered in the
server's memory (measured: a 210 MB upstream stream read whole within 4 s and Daphne's
RSS at 400 MB, the client reading nothing; paced, the upstream stops at
10 MB). uvicorn and hypercorn make ``send`` wait instead, and ASGI apps assume it.

Twisted has the mechanism: a transport whose write buffer passes its high-water mark
(64 KB) calls ``pauseProducing`` on its producer — the HTTP channel, which passes it on
to the producer its current request registered (``IRequest.registerProducer``, public
Twisted API) — and ``resumeProducing`` once the buffer has gone out to the socket;
``stopProducing`` when the connection is lost. Daphne registers no producer for HTTP.
:func:`pace_http_responses` wraps Daphne's ``Server.handle_reply`` so that, for a
response body with more to come, a streaming producer (:class:`Pacer`) is registered on
the request at its first such message and ``send`` returns only while the transport is
not paused. Daphne runs Twisted's asyncio reactor, so Twisted's calls and the app's
awaits share one event loop and a plain asyncio future carries the signal. The
request's ``finish`` unregisters the producer first (Twisted's cleanup expects it gone)
and stops it (:func:`release`): an app paused when Daphne's ``http_timeout`` finishes the
response stops waiting then and gets its ``http.disconnect``.

At most one body chunk (plus the 64 KB buffer and the kernel's socket buffers) is then
held per response for a stalled client. The app's task waits as long as the client
does; a client that goes away ends the wait (``stopProducing``), and Daphne then reports
``http.disconnect`` as before. WebSocket connections are untouched (another protocol).
Under any other server this module does nothing: their ``send`` already waits.
"""

from __future__ import annotations

import asyncio
import sys


class Pacer:
    """A Twisted push producer for one HTTP response: paused while the transport's
    buffer is over its mark; :meth:`writable` awaits the resume (or the connection's loss).
    Twisted calls the producer methods on the event loop's thread."""

    def __init__(self, paused: bool = False) -> None:
        self.paused = paused
        self.stopped = False
        self._waiter: asyncio.Future[None] | None = None

    def pauseProducing(self) -> None:  # Twisted's IPushProducer names
        if not self.stopped:
            self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:
        self.stopped = True
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def writable(self) -> None:
        """Return once the transport takes more (at once when it does now)."""
        while self.paused and not self.stopped:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)  # a cancelled waiter leaves it to others


def release(request) -> None:
    """Before Daphne's request finishes — its response's end, or Daphne's ``http_timeout``
    finishing it while the app waits on a paused pacer: end that wait now (not at
    ``application_close_timeout``, which cancels the app), and unregister the pacer
    (Twisted's request cleanup logs an error for a producer still registered)."""
    pacer = getattr(request, "_memoryweb_pacer", None)
    if isinstance(pacer, Pacer):
        pacer.stopProducing()  # a finished response takes no more: the app stops waiting
    if isinstance(request.producer, Pacer) and request.channel is not None:
        request.unregisterProducer()


def pace_http_responses() -> None:
    """Make Daphne's ``send`` of a response body wait while the client is not reading.

    Only when Daphne is the server (its CLI has imported ``daphne.server``, which installs
    Twisted's asyncio reactor); idempotent."""
    if "daphne.server" not in sys.modules:
        return
    from daphne.http_protocol import WebRequest
    from daphne.server import Server

    if getattr(Server, "_memoryweb_paced", False):
        return
    handle_reply = Server.handle_reply

    async def paced_handle_reply(self, protocol, message):
        if not isinstance(protocol, WebRequest) or message.get("type") != "http.response.body":
            return await handle_reply(self, protocol, message)
        if not message.get("more_body", False):  # the last: finish() unregisters the pacer
            return await handle_reply(self, protocol, message)
        pacer: Pacer | None = getattr(protocol, "_memoryweb_pacer", None)
        if pacer is None and not protocol.finished and protocol.channel is not None \
                and protocol.producer is None:
            # Already over the mark (say, a previous response on this connection)? Start
            # paused: the channel resumes its producer once the transport has drained.
            pacer = Pacer(paused=bool(getattr(protocol.channel, "_waitingForTransport", False)))
            protocol.registerProducer(pacer, True)
            protocol._memoryweb_pacer = pacer
        await handle_reply(self, protocol, message)
        if pacer is not None:
            await pacer.writable()

    finish = WebRequest.finish

    def finish_unpaced(self):
        release(self)
        return finish(self)

    Server.handle_reply = paced_handle_reply
    WebRequest.finish = finish_unpaced
    Server._memoryweb_paced = True
