"""The server's admin socket: one owner of the embedded data directory.

Chroma's embedded PersistentClient is safe in one process only, so in embedded mode the
server owns it, for its whole life. Management commands run beside it (``stats``,
``reindex``, ``verify_certificate``, ``import_memories``, the embedded ``mcp``…) do their
vector-store work through the server instead of opening the directory: the server
listens on a Unix socket in the data directory (``MEMORYWEB_CONTROL_SOCKET``, mode 0600,
checked peer user) and runs a short list of named operations, one JSON object per line:

* ``vector.*``: the VectorStore operations (upsert, update_metadata, delete, query,
  nearest, embeddings, count, ids, drop_collection, forget_cached, heartbeat). Vectors
  travel as base64 float32, never pickled. The command does everything else itself
  (SQL, embedding, progress bars), so every command works unchanged.
* ``mcp.call``: one MCP tool call of the embedded ``manage.py mcp`` with the agent's key,
  which the server checks at every call; the tool then runs here, as that key's
  principal, like a call to ``/mcp`` (its events reach this server's WebSocket feeds).
* ``live.send``: a command's live event (memories imported, erased…) for this server's
  WebSocket feeds (the embedded channel layer is in-process).
* ``hello``: who answers (protocol version, pid, operations).

Who may connect is decided by the file system (the socket is 0600 in the data directory,
and the peer must run as this user or root); nothing arbitrary can be run. Started by the
ASGI entry point (apps/server/asgi.py) before anything opens the store: the socket first,
then the store, which a command that held it hands over between two of its operations
(apps/memories/guest_store.py) while the server answers 503 meanwhile. When no server
runs, commands open the directory themselves, as before.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connections

from apps.memories import vectorstore
from apps.ops import control_client
from apps.ops.control_client import MAX_LINE, pack_array, peer_uid, unpack_array

log = logging.getLogger(__name__)

PROTOCOL = 1
#: Commands connected at once (each connection has a thread).
MAX_CONNECTIONS = 32
#: A connection with no request for this long is closed, so a command that hangs (or
#: forgot its connection) does not keep one of the slots above forever; the client
#: reconnects by itself (control_client.ControlClient).
IDLE_SECONDS = 300.0
#: ``accept()`` failing for a moment (out of descriptors, a peer gone before it was
#: accepted…) is retried after a pause, doubled up to the maximum; only a closed
#: listener ends the loop.
ACCEPT_RETRY_SECONDS = 0.05
ACCEPT_RETRY_MAX_SECONDS = 2.0
#: accept()'s errors that mean the listener itself is gone (closed, shut down).
LISTENER_CLOSED = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})
#: The refusal a connection gets when every slot is taken: a code of its own, sent before
#: any request was read, so the client knows nothing was done and connects again.
FULL = "full"
#: How long an operation waits for the store while a command hands it over.
CLAIM_WAIT_SECONDS = 60.0
CLAIM_POLL_SECONDS = 0.2
#: The tools ``mcp.call`` runs (apps/mcp/backends.py's Backend).
MCP_TOOLS = frozenset({"store", "recall", "update", "forget", "list_recent", "timeline_browse",
                       "timeline_node", "grip_expand", "end_of_day", "consolidate"})
#: The channel-layer groups of apps/live/events.py.
LIVE_GROUP = re.compile(r"live\.(ns|key|grant)\.[0-9]+")

Operation = Callable[[dict[str, Any]], Any]
OPERATIONS: dict[str, Operation] = {}

_started = False
_control_lock = None  # the open file holding this server's claim on the socket


def serving() -> bool:
    """This process is the server answering on the admin socket (it holds the claim).
    Such a process never sends anything to the socket: it would be talking to itself."""
    return control_client.serving()


class Refused(Exception):
    """An operation's refusal, answered as ``{"ok": false, "error": {code, message}}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(function: Operation) -> Operation:
        OPERATIONS[name] = function
        return function
    return register


# --- start-up ----------------------------------------------------------------------

def start() -> bool:
    """In the embedded server: serve the admin socket and take the vector store.

    Returns True when this process became the owner. Off when CHROMA_URL is set (each
    process talks to the Chroma server) or MEMORYWEB_CONTROL_SOCKET is empty.
    """
    global _started
    if _started or settings.CHROMA_URL or not settings.MEMORYWEB_CONTROL_SOCKET:
        return False
    _started = True
    path = Path(settings.MEMORYWEB_CONTROL_SOCKET)
    if not _claim_socket(path):
        # A second server on the same data directory: it works through the first one's
        # socket like a command does (its vector operations are the first one's).
        log.error("another server process already serves %s: this one uses it for the vector "
                  "store. Run one server per embedded data directory, or set CHROMA_URL.", path)
        return False
    vectorstore.become_owner()
    listener = _bind(path)
    atexit.register(_remove, path, os.stat(path).st_ino)
    threading.Thread(target=_serve, args=(listener,), name="control-socket", daemon=True).start()
    threading.Thread(target=_claim_store, name="vector-store-claim", daemon=True).start()
    log.info("admin socket at %s", path)
    return True


def _claim_socket(path: Path) -> bool:
    """One server per socket path: a lock file beside it, held for the process's life."""
    global _control_lock
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_name(path.name + ".lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _control_lock = handle
    control_client.mark_serving()  # the client side (apps.ops) must not import this module
    return True


def _bind(path: Path) -> socket.socket:
    """Listen on ``path``, mode 0600 from the first instant: bound inside a fresh 0700
    directory, made 0600, then renamed into place (replacing a file a killed server
    left; this process holds the claim, so no live server owns it)."""
    staging = Path(tempfile.mkdtemp(prefix=".c", dir=path.parent))
    try:
        temporary = staging / "s"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(temporary))
        os.chmod(temporary, 0o600)
        listener.listen(16)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return listener


def _remove(path: Path, inode: int) -> None:
    """At exit: remove the socket file if it is still ours."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _claim_store() -> None:
    """Take the embedded store as soon as it is free (a command started before the
    server hands it over between two operations, or exits)."""
    told = False
    while True:
        try:
            vectorstore.get_vector_store()
        except vectorstore.EmbeddedStoreBusy as exc:
            if not told:
                log.warning("waiting for the embedded vector store: %s", exc)
                told = True
            time.sleep(CLAIM_POLL_SECONDS)
        except Exception:  # a broken store: readiness reports it; keep trying
            log.exception("opening the embedded vector store failed; retrying")
            time.sleep(5)
        else:
            if told:
                log.info("the server now holds the embedded vector store")
            return


# --- serving -----------------------------------------------------------------------

def _serve(listener: socket.socket) -> None:
    """Accept connections until the listener is closed. A failing ``accept()`` (EMFILE
    when the process is out of descriptors, ECONNABORTED, EINTR…) is retried after a
    short pause: giving up would leave every command unanswered until a restart."""
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    trusted = {os.getuid(), 0}
    pause = ACCEPT_RETRY_SECONDS
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            if exc.errno in LISTENER_CLOSED:
                log.info("the admin socket is closed: no more connections (%s)", exc)
                return
            log.warning("admin socket: accept() failed (%s); retrying in %.2f s", exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, ACCEPT_RETRY_MAX_SECONDS)
            continue
        pause = ACCEPT_RETRY_SECONDS
        try:
            _admit(conn, slots, trusted)
        except Exception:  # one connection's trouble (no thread left…) never ends the loop
            log.exception("admin socket: a connection could not be served")
            conn.close()


def _admit(conn: socket.socket, slots: threading.BoundedSemaphore, trusted: set[int]) -> None:
    uid = peer_uid(conn)
    if uid is not None and uid not in trusted:
        log.warning("admin socket: refused a connection from user id %s", uid)
        conn.close()
        return
    if not slots.acquire(blocking=False):
        conn.settimeout(1.0)  # a refusal never blocks the accept loop
        try:
            _send(conn, _error(FULL, f"more than {MAX_CONNECTIONS} commands connected"))
        except OSError:
            pass  # the command went away meanwhile
        finally:
            conn.close()
        return
    try:
        threading.Thread(target=_handle, args=(conn, slots), name="control-connection",
                         daemon=True).start()
    except BaseException:
        slots.release()
        raise


def _handle(conn: socket.socket, slots: threading.BoundedSemaphore) -> None:
    """Answer one connection's requests in order until it hangs up, or asks nothing for
    IDLE_SECONDS (the wait for a request times out, and the connection is closed)."""
    try:
        with conn, conn.makefile("rb") as reader:
            conn.settimeout(IDLE_SECONDS)
            while True:
                line = reader.readline(MAX_LINE + 1)
                if not line:
                    return
                if not line.endswith(b"\n"):
                    _send(conn, _error("too_large", f"a request is at most {MAX_LINE} bytes"))
                    return
                _send(conn, _answer(line))
    except OSError:
        pass  # the command went away, or stayed idle too long (TimeoutError)
    finally:
        slots.release()
        connections.close_all()  # this thread's database connections


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall(json.dumps(reply, cls=DjangoJSONEncoder, separators=(",", ":")).encode() + b"\n")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _answer(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        op, args = request["op"], request.get("args") or {}
        if not isinstance(op, str) or not isinstance(args, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError):
        return _error("bad_request", 'one JSON object per line: {"op": NAME, "args": {...}}')
    handler = OPERATIONS.get(op)
    if handler is None:
        return _error("unknown_operation", f"no operation {op!r} (known: "
                      f"{', '.join(sorted(OPERATIONS))})")
    close_old_connections()
    try:
        return {"ok": True, "result": handler(args)}
    except Refused as exc:
        return _error(exc.code, exc.message)
    except (KeyError, TypeError, ValueError) as exc:
        return _error("bad_request", f"{op}: {type(exc).__name__}: {exc}")
    except Exception as exc:  # answered, and logged here where the trace is useful
        log.exception("admin socket operation %s failed", op)
        return _error("server_error", f"{op} failed: {type(exc).__name__}: {exc}")
    finally:
        close_old_connections()


# --- operations --------------------------------------------------------------------

@operation("hello")
def _hello(args: dict[str, Any]) -> dict[str, Any]:
    return {"protocol": PROTOCOL, "pid": os.getpid(), "operations": sorted(OPERATIONS)}


def _store() -> vectorstore.VectorStore:
    """The server's store; waits while a command that held it hands it over."""
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        try:
            return vectorstore.get_vector_store()
        except vectorstore.EmbeddedStoreBusy as exc:
            if time.monotonic() > deadline:
                raise Refused("busy", str(exc)) from None
            time.sleep(CLAIM_POLL_SECONDS)


def _namespace(args: dict[str, Any]):
    """An unsaved Namespace naming the collection (the command read it from SQL)."""
    from apps.tenancy.models import Namespace

    raw = args["namespace"]
    if not (isinstance(raw, dict) and isinstance(raw.get("id"), int)
            and isinstance(raw.get("slug"), str) and isinstance(raw.get("collection"), str)
            and raw["collection"]):
        raise Refused("bad_request", "namespace: expected {id, slug, collection}")
    return Namespace(pk=raw["id"], slug=raw["slug"], collection=raw["collection"])


def _strings(args: dict[str, Any], key: str) -> list[str]:
    values = args[key]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Refused("bad_request", f"{key}: expected a list of strings")
    return values


@operation("vector.upsert")
def _upsert(args: dict[str, Any]) -> None:
    ids, vectors, metadatas = _strings(args, "ids"), unpack_array(args["embeddings"]), \
        args["metadatas"]
    if not (isinstance(metadatas, list) and all(isinstance(m, dict) for m in metadatas)
            and len(metadatas) == len(ids) == len(vectors) and vectors.ndim == 2):
        raise Refused("bad_request", "vector.upsert: one embedding row and one metadata "
                      "object per id")
    _store().upsert(_namespace(args), ids, vectors, metadatas, fresh=bool(args.get("fresh")))


@operation("vector.update_metadata")
def _update_metadata(args: dict[str, Any]) -> dict[str, Any]:
    """Filter fields only (an edit of tags, kind or metadata): no vectors sent."""
    ids, metadatas = _strings(args, "ids"), args["metadatas"]
    if not (isinstance(metadatas, list) and all(isinstance(m, dict) for m in metadatas)
            and len(metadatas) == len(ids)):
        raise Refused("bad_request", "vector.update_metadata: one metadata object per id")
    found = _store().update_metadata(_namespace(args), ids, metadatas)
    kept = list(found)
    return {"ids": kept, "vectors": pack_array([found[i] for i in kept]) if kept else None}


@operation("vector.delete")
def _delete(args: dict[str, Any]) -> None:
    _store().delete(_namespace(args), _strings(args, "ids"))


@operation("vector.query")
def _query(args: dict[str, Any]) -> list[list[Any]]:
    where, n = args.get("where"), args["n"]
    if (where is not None and not isinstance(where, dict)) or not isinstance(n, int) or n < 1:
        raise Refused("bad_request", "vector.query: n is a positive integer, where an object")
    hits = _store().query(_namespace(args), unpack_array(args["embedding"]), n, where)
    return [[hit.id, hit.similarity] for hit in hits]


@operation("vector.nearest")
def _nearest(args: dict[str, Any]) -> list[list[Any] | None]:
    vectors = unpack_array(args["embeddings"])
    within = args.get("within")
    if vectors.ndim != 2:
        raise Refused("bad_request", "vector.nearest: embeddings is a matrix")
    if within is not None and (isinstance(within, bool) or not isinstance(within, int | float)
                               or not math.isfinite(within)):
        raise Refused("bad_request", "vector.nearest: within is a finite number")
    hits = _store().nearest(_namespace(args), vectors, within)
    return [[hit.id, hit.similarity] if hit else None for hit in hits]


@operation("vector.embeddings")
def _embeddings(args: dict[str, Any]) -> dict[str, Any]:
    found = _store().embeddings(_namespace(args), _strings(args, "ids"))
    ids = list(found)
    return {"ids": ids, "vectors": pack_array([found[i] for i in ids]) if ids else None}


@operation("vector.count")
def _count(args: dict[str, Any]) -> int:
    return _store().count(_namespace(args))


@operation("vector.context_holders")
def _context_holders(args: dict[str, Any]) -> list[str]:
    context_ids = args["context_ids"]
    if not (isinstance(context_ids, list) and all(isinstance(i, str) for i in context_ids)
            and len(context_ids) <= 10_000):
        raise Refused("bad_request", "vector.context_holders: context_ids, at most 10000 strings")
    return _store().context_holders(_namespace(args), context_ids)


@operation("vector.ids")
def _ids(args: dict[str, Any]) -> list[str]:
    offset, limit = args["offset"], args["limit"]
    if not (isinstance(offset, int) and isinstance(limit, int) and offset >= 0
            and 1 <= limit <= 10_000):
        raise Refused("bad_request", "vector.ids: offset >= 0, limit 1..10000")
    return _store().ids_page(_namespace(args), offset, limit)


@operation("vector.drop_collection")
def _drop_collection(args: dict[str, Any]) -> None:
    name = args["name"]
    if not isinstance(name, str) or not name.startswith(settings.CHROMA_COLLECTION_PREFIX):
        raise Refused("bad_request", "vector.drop_collection: only MemoryWeb's collections "
                      f"(prefix {settings.CHROMA_COLLECTION_PREFIX!r})")
    _store().drop_collection(name)


@operation("vector.compact")
def _compact(args: dict[str, Any]) -> bool:
    """Erasure's rewrite of a namespace's collection (VectorStore.compact), for an erasure
    that a command executes beside the server."""
    return _store().compact(_namespace(args))


@operation("vector.forget_cached")
def _forget_cached(args: dict[str, Any]) -> None:
    _store().forget_cached(_namespace(args))


@operation("vector.heartbeat")
def _heartbeat(args: dict[str, Any]) -> None:
    _store().heartbeat()


@operation("live.send")
def _live_send(args: dict[str, Any]) -> None:
    """A command's live event (a memory imported, erased…) to this server's WebSocket
    feeds: its in-memory channel layer is the one they listen on."""
    from apps.live import events

    group, message = args["group"], args["message"]
    if not (isinstance(group, str) and LIVE_GROUP.fullmatch(group) and isinstance(message, dict)
            and message.get("type") in {"live.event", "live.control"}):
        raise Refused("bad_request", "live.send: a live group and a live.event or live.control "
                      "message")
    events.send(group, message)


@operation("mcp.call")
def _mcp_call(args: dict[str, Any]) -> Any:
    """One tool call of the embedded ``manage.py mcp``: the key is checked now (a key
    revoked or expired while the agent runs stops working at once), then the tool runs
    as its principal through the services, as every other door does."""
    from mcp.server.mcpserver.exceptions import ToolError

    from apps.mcp.backends import ServiceBackend
    from apps.mcp.http import principal_for_key

    tool, key, arguments = args.get("tool"), args.get("key"), args.get("args")
    if tool not in MCP_TOOLS or not isinstance(arguments, list):
        raise Refused("bad_request", f"mcp.call: tool is one of {sorted(MCP_TOOLS)}, args a list")
    principal = principal_for_key(key) if isinstance(key, str) and key else None
    if principal is None:
        raise Refused("tool_error", "authentication_failed: Invalid, expired or revoked API key.")
    if tool == "list_recent" and not (len(arguments) == 1 and isinstance(arguments[0], int)
                                      and 1 <= arguments[0] <= 100):
        raise Refused("bad_request", "mcp.call list_recent: limit 1..100")
    from apps.tenancy import budget

    verdict = budget.draw(principal.label)  # the key's one budget, shared with every door
    if not verdict.allowed:
        raise Refused("tool_error", f"rate_limited: the rate limit ({verdict.rate}, shared by "
                      "REST, MCP and the live socket) is used up; retry in "
                      f"{verdict.retry_after_seconds} s.")
    try:
        return getattr(ServiceBackend(principal), tool)(*arguments)
    except ToolError as exc:
        raise Refused("tool_error", str(exc)) from None
