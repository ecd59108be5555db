"""The admin socket's own robustness (apps/server/control.py, apps/ops/control_client.py).

* A live event in the server never goes through its own admin socket: a fresh real Daphne
  whose first traffic is a WebSocket ``ingest`` and an ``/mcp`` store (no plain HTTP
  request before) delivers both events to a feed, and the socket still serves a command
  afterwards (before, the event looped server -> socket -> server until every connection
  slot was taken, and ``stats`` got "busy" for the rest of the server's life).
* The accept loop survives transient ``accept()`` errors and stops when the listener is
  closed; an idle connection is closed by the server; a client whose connection was
  closed, or refused for lack of slots, reconnects by itself (bounded).
* A process with no socket configured uses the plain VectorStore and holds the lock.

The socket tests run the server side in this process on a real Unix socket (a fresh
short directory: socket paths are limited to ~107 bytes).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from apps.memories.remote_store import RemoteVectorStore
from apps.memories.vectorstore import EmbeddedStoreBusy
from apps.ops import control_client
from apps.ops.control_client import ControlClient, ControlError
from apps.server import control
from tests.helpers.commands import FACTS, run_command, set_up_keys
from tests.helpers.embedded import migrate
from tests.servers import ROOT, DaphneServer

# --- 1. live events in a fresh server ------------------------------------------------


class UntouchedDaphne(DaphneServer):
    """A Daphne started without a single HTTP request: ready when its port accepts a
    connection (the application, and with it the admin socket, is loaded by then). The
    usual start polls /readiness, a plain Django request, which would hide the bug."""

    def ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            return True
        except OSError:
            return False


def _ws(server: DaphneServer, key: str):
    sock = connect(server.url.replace("http", "ws") + "/ws/v1/live", open_timeout=60,
                   additional_headers={"Authorization": f"Bearer {key}"})
    assert json.loads(sock.recv(timeout=60))["type"] == "ready"
    return sock


def _next(sock, kind: str) -> dict:
    while True:
        message = json.loads(sock.recv(timeout=60))
        if message["type"] in (kind, "error"):
            assert message["type"] == kind, message
            return message


def _mcp_store(server: DaphneServer, key: str, text: str) -> str:
    response = httpx.post(f"{server.url}/mcp", timeout=120, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "store", "arguments": {"content": text}}},
        headers={"Authorization": f"Bearer {key}",
                 "Accept": "application/json, text/event-stream"})
    assert response.status_code == 200, response.text
    body = response.text
    if body.startswith(("event:", "data:")):  # one SSE message
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
    result = json.loads(body)["result"]
    assert not result.get("isError"), result
    return json.loads(result["content"][0]["text"])["id"]


def test_first_traffic_over_websocket_and_mcp_never_loops_through_the_socket(
        embedded_env, tmp_path):
    keys = set_up_keys(embedded_env)
    with UntouchedDaphne(tmp_path / "daphne.log", embedded_env) as server, \
            _ws(server, keys["admin"]) as feed, _ws(server, keys["agent"]) as writer:
        feed.send(json.dumps({"type": "events", "id": "e1"}))
        _next(feed, "watching")
        writer.send(json.dumps({"type": "ingest", "id": "i1", "content": FACTS[0]}))
        ingested = _next(writer, "ingested")["results"][0]["id"]
        event = _next(feed, "event")
        assert (event["event"], [m["id"] for m in event["memories"]]) == ("created", [ingested])

        stored = _mcp_store(server, keys["agent"], FACTS[1])
        event = _next(feed, "event")
        assert (event["event"], [m["id"] for m in event["memories"]]) == ("created", [stored])

        # The admin socket still has its connection slots: a command works through it.
        stats = json.loads(run_command(embedded_env, "stats", "--json").stdout)
        demo = next(row for row in stats["namespaces"] if row["slug"] == "demo")
        assert (demo["memories"], demo["vector_entries"], demo["health"]) == (2, 2, "ok"), demo


# --- 2. the accept loop, idle connections, reconnecting clients ----------------------


class Served:
    """The server side of the admin socket, run in this process on a real socket."""

    def __init__(self, listener, path: Path):
        self.listener, self.path = listener, path
        self.thread = threading.Thread(target=control._serve, args=(listener,), daemon=True)

    def ask(self, line: bytes = b'{"op": "hello"}') -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(self.path))
            sock.sendall(line + b"\n")
            with sock.makefile("rb") as reader:
                return json.loads(reader.readline())


@pytest.fixture
def served(settings):
    """Start with ``served(listener=None)``; stopped (and checked to stop) at the end."""
    directory = Path(tempfile.mkdtemp(prefix="mwc", dir="/tmp"))
    path = directory / "c.sock"
    settings.CHROMA_URL = ""
    settings.MEMORYWEB_CONTROL_SOCKET = str(path)
    started: list[Served] = []

    def start(wrap=None) -> Served:
        listener = control._bind(path)
        server = Served(wrap(listener) if wrap else listener, path)
        server.real = listener
        server.thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        # Closing the listener (shutdown wakes the blocked accept with EINVAL): the loop stops.
        server.real.shutdown(socket.SHUT_RDWR)
        server.real.close()
        server.thread.join(timeout=30)
        assert not server.thread.is_alive(), "the accept loop did not stop on a closed listener"
    shutil.rmtree(directory, ignore_errors=True)


class FlakyListener:
    """A real listener whose next ``accept()`` calls fail with the given errors first, as
    the kernel's do when the process is out of descriptors or a peer aborted."""

    def __init__(self, listener: socket.socket, errors: list[int]):
        self.listener, self.errors = listener, list(errors)

    def accept(self):
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, os.strerror(code))
        return self.listener.accept()


def test_the_accept_loop_survives_transient_errors(served):
    server = served(lambda listener: FlakyListener(listener, [
        errno.EMFILE, errno.ENFILE, errno.ECONNABORTED, errno.EINTR]))
    assert server.ask()["result"]["pid"] == os.getpid()
    assert server.ask()["ok"]


def test_an_idle_connection_is_closed_by_the_server(served, monkeypatch):
    monkeypatch.setattr(control, "IDLE_SECONDS", 0.3, raising=False)
    server = served()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(server.path))
        sock.sendall(b'{"op": "hello"}\n')
        with sock.makefile("rb") as reader:
            assert json.loads(reader.readline())["ok"]
            assert reader.readline() == b""  # then nothing is asked: the server hangs up


def test_a_client_reconnects_when_the_server_closed_its_connection(served, monkeypatch):
    accepted: list[socket.socket] = []
    handle = control._handle

    def recorded(conn, slots):
        accepted.append(conn)
        handle(conn, slots)

    monkeypatch.setattr(control, "_handle", recorded)
    served()
    client = ControlClient()
    assert client.call("hello")["pid"] == os.getpid()
    # The server side hangs up on the idle connection (its idle timeout, a restart).
    accepted[0].shutdown(socket.SHUT_RDWR)
    assert client.call("hello")["pid"] == os.getpid()
    assert len(accepted) == 2  # a new connection, made by the client itself


def _connection_threads_finish() -> None:
    for thread in threading.enumerate():
        if thread.name == "control-connection":
            thread.join(timeout=30)


def test_a_client_retries_when_every_connection_slot_is_taken(served, monkeypatch):
    monkeypatch.setattr(control, "MAX_CONNECTIONS", 1)
    server = served()
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.settimeout(30)
    holder.connect(str(server.path))
    holder.sendall(b'{"op": "hello"}\n')
    holder_reader = holder.makefile("rb")
    assert json.loads(holder_reader.readline())["ok"]  # it has the one slot, and keeps it

    # Bounded: while the slot stays taken, the call gives up, as "busy".
    monkeypatch.setattr(control_client, "_backoff", lambda attempt: None, raising=False)
    remote = RemoteVectorStore()
    with pytest.raises(EmbeddedStoreBusy):
        remote.heartbeat()
    with pytest.raises(ControlError) as refused:
        remote.client.call("hello")
    assert refused.value.code == "busy"

    # Transparent: the slot is given back while the client waits to retry.
    waits: list[int] = []

    def free_the_slot(attempt: int) -> None:
        waits.append(attempt)
        if len(waits) == 1:
            holder_reader.close()
            holder.close()
            _connection_threads_finish()

    monkeypatch.setattr(control_client, "_backoff", free_the_slot, raising=False)
    client = ControlClient()
    assert client.call("hello")["pid"] == os.getpid()
    assert waits == [0]


def test_a_command_compacts_a_collection_through_the_server(served, monkeypatch):
    """Erasure executed by a command beside the server: the server rewrites the
    collection (``vector.compact``), so Chroma's log no longer holds the deleted vector."""
    from apps.memories import chroma_files, vectorstore
    from apps.tenancy.models import Namespace

    owned = vectorstore.VectorStore(vectorstore.make_client())  # the server's own store
    monkeypatch.setattr(control, "_store", lambda: owned)
    served()
    namespace = Namespace(pk=987_654, slug="compacted", collection=f"c{uuid.uuid4().hex}")
    remote = RemoteVectorStore()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    vectors = np.eye(3, 384, dtype=np.float32)
    remote.upsert(namespace, ids, vectors, [{"kind": "fact"}] * 3, fresh=True)
    remote.delete(namespace, ids[:1])
    assert chroma_files.disk_residue(ids[:1]) > 0  # the log still names it
    assert remote.compact(namespace) is True
    assert chroma_files.disk_residue(ids[:1]) == 0
    assert remote.count(namespace) == 2
    remote.drop_collection(owned.collection_name(namespace))


# --- 3. no socket configured: the plain store ----------------------------------------

NO_SOCKET = """
from apps.memories import vectorstore
from apps.server import control
control.start()  # as the server does at start-up: nothing to serve
store = vectorstore.get_vector_store()
print(type(store).__name__, isinstance(store, vectorstore.VectorStore),
      vectorstore._lock_file is not None)
"""


def test_no_socket_configured_means_the_plain_vector_store(embedded_env):
    env = {**embedded_env, "MEMORYWEB_CONTROL_SOCKET": ""}
    migrate(env)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", NO_SOCKET], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The embedded store itself (with the small index in front), not a guest's view.
    assert done.stdout.split()[-3:] == ["TieredVectorStore", "True", "True"], done.stdout
