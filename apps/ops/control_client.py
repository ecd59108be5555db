"""The client side of a running embedded server's admin socket (apps/server/control.py).

A management command reaches the server that owns the data directory through a Unix
socket in that directory: one JSON object per line each way, one request answered at a
time per connection (each thread keeps its own connection). Arrays travel as base64
float32, never pickled. Who may connect is decided by the socket's permissions (0600)
and the directory's; the client checks the other end too: a server run by this user,
by root, or by the data directory's owner, so a key (``mcp.call``) never goes to a
stranger's socket.

This is low-level transport every app may use (apps.ops sits under all but apps.core):
what travels over it is the callers' business (apps/memories/remote_store.py for the
vector store, apps/mcp/backends.py for tool calls, send_live_event below).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

log = logging.getLogger(__name__)

#: A request or answer longer than this is refused (a batch of 1,000 vectors is ~2 MB).
MAX_LINE = 64 * 1024 * 1024
CONNECT_SECONDS = 5.0
#: How long one call may take before the command gives up on the server.
CALL_SECONDS = 600.0
#: Connecting again when the server refused the connection for lack of slots
#: (control.FULL): this many retries, the pause doubling from RETRY_SECONDS.
RECONNECTS = 5
RETRY_SECONDS = 0.1
#: apps/server/control.py's FULL (not imported: apps.ops sits below apps.server).
_FULL = "full"

#: Set by the server's control.start() once this process holds the socket's claim.
_serving = False


def mark_serving() -> None:
    """This process now serves the admin socket (apps/server/control.py calls it): from
    here on it never sends to the socket, which would be talking to itself."""
    global _serving
    _serving = True


def serving() -> bool:
    """This process is the server answering on the admin socket."""
    return _serving


class ControlError(Exception):
    """The server answered with an error: ``code`` and a message for a person."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class ServerGone(ConnectionError):
    """No server answers on the socket, or it closed the connection mid-call."""


def socket_path() -> str:
    """The admin socket of this data directory ('' when there is none to look for)."""
    if settings.CHROMA_URL:
        return ""  # scaled: every process talks to the Chroma server itself
    return settings.MEMORYWEB_CONTROL_SOCKET or ""


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end (Linux), None where unknown."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


def pack_array(values: Any) -> dict[str, Any]:
    array = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(array.shape), "f32": base64.b64encode(array.tobytes()).decode()}


def unpack_array(packed: Mapping[str, Any]) -> np.ndarray:
    """The array ``pack_array`` sent; ValueError if the shape and the bytes disagree."""
    shape = [int(n) for n in packed["shape"]]
    data = base64.b64decode(packed["f32"], validate=True)
    array = np.frombuffer(data, dtype="<f4")
    if not 1 <= len(shape) <= 2 or any(n < 0 for n in shape) or array.size != int(np.prod(shape)):
        raise ValueError("array shape does not match its data")
    return array.reshape(shape).astype(np.float32)


def pack_namespace(namespace) -> dict[str, Any]:
    """What the server needs to find a namespace's collection (no database read there)."""
    return {"id": namespace.pk, "slug": namespace.slug, "collection": namespace.collection}


class ControlClient:
    def __init__(self) -> None:
        self._threads = threading.local()

    def reachable(self) -> bool:
        """A server answers on the socket right now (connects and hangs up)."""
        sock = self._connect()
        if sock is None:
            return False
        sock.close()
        return True

    def available(self) -> bool:
        """This thread has, or can now open, a connection to the server."""
        return self._connection() is not None

    def _connect(self) -> socket.socket | None:
        path = socket_path()
        if not path or not os.path.exists(path):
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_SECONDS)
        try:
            sock.connect(path)
        except OSError:  # refused: a socket file left by a server that was killed
            sock.close()
            return None
        uid = peer_uid(sock)
        if uid is not None and uid not in {os.getuid(), 0, os.stat(settings.DATA_DIR).st_uid}:
            sock.close()
            raise ControlError("untrusted", f"the process serving {path} runs as user id {uid}, "
                               "neither this user nor the data directory's owner.")
        sock.settimeout(CALL_SECONDS)
        return sock

    def _connection(self) -> tuple[socket.socket, Any] | None:
        held = getattr(self._threads, "connection", None)
        if held is not None and _hung_up(held[0]):
            # The server closed it while this thread was idle (its idle timeout, a
            # restart): no request was in flight, so a new connection is all it takes.
            self._drop()
            held = None
        if held is None:
            sock = self._connect()
            if sock is None:
                return None
            held = self._threads.connection = (sock, sock.makefile("rb"))
        return held

    def _drop(self) -> None:
        held = getattr(self._threads, "connection", None)
        self._threads.connection = None
        if held is not None:
            held[1].close()
            held[0].close()

    def call(self, op: str, args: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its result; ControlError for the server's refusal,
        ServerGone when no server answers (nothing was, or may have been, done).

        A connection the server closed while idle, or refused because every slot was
        taken, is made again here (bounded): in both cases the server read no request,
        so nothing is done twice. A connection lost during a call is not retried here
        (ServerGone): whether it was done is unknown, and only the caller knows whether
        the operation may run again (vector operations may: GuestVectorStore)."""
        line = json.dumps({"op": op, "args": dict(args or {})}, cls=DjangoJSONEncoder,
                          separators=(",", ":")).encode() + b"\n"
        for attempt in range(RECONNECTS + 1):
            reply = self._exchange(op, line)
            if reply.get("ok"):
                return reply.get("result")
            error = reply.get("error") or {}
            code, message = str(error.get("code", "error")), str(error.get("message", ""))
            if code != _FULL:
                raise ControlError(code, message)
            self._drop()  # the server closes a refused connection
            if attempt < RECONNECTS:
                _backoff(attempt)
        raise ControlError("busy", f"the server has no connection free ({message}); "
                           "try again when fewer commands run.")

    def _exchange(self, op: str, line: bytes) -> dict[str, Any]:
        held = self._connection()
        if held is None:
            raise ServerGone(f"no server answers on {socket_path() or 'the admin socket'}")
        sock, reader = held
        try:
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed before it read the request: its refusal (FULL) may be there
            answer = reader.readline(MAX_LINE + 1)
        except TimeoutError:
            self._drop()
            raise ControlError("timeout", f"the server did not answer {op} within "
                               f"{CALL_SECONDS:.0f} s.") from None
        except OSError as exc:
            self._drop()
            raise ServerGone(f"the server closed the connection ({exc})") from None
        if not answer.endswith(b"\n"):
            self._drop()
            raise ServerGone("the server closed the connection")
        return json.loads(answer)


def _hung_up(sock: socket.socket) -> bool:
    """The server closed this connection (or it broke) while no call was in flight.
    Between two calls nothing is due from the server, so anything readable (the end of
    the stream, an error, or data that belongs to no request) makes it unusable."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed already
        return True


def _backoff(attempt: int) -> None:
    """The pause before connecting again after a refusal for lack of slots."""
    time.sleep(RETRY_SECONDS * 2 ** attempt)


_events_client: ControlClient | None = None


def send_live_event(group: str, message: Mapping[str, Any]) -> bool:
    """Hand a live event (apps/live/events.py) to the embedded server beside this
    process, for its WebSocket feeds; False when no server answers, or when this process
    is that server (its ``live.send`` would call events.send again: each hop a connection
    slot held, until all were taken and the socket answered nothing else)."""
    global _events_client
    if not socket_path() or serving():
        return False  # the server itself: its own event would come back to it, forever
    if _events_client is None:
        _events_client = ControlClient()
    if not _events_client.available():
        return False
    try:
        _events_client.call("live.send", {"group": group, "message": dict(message)})
    except (ControlError, ServerGone) as exc:
        log.warning("live event to %s not handed to the server: %s", group, exc)
        return False
    return True
