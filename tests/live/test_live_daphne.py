"""/ws/v1/live end to end: real Daphne processes, a real WebSocket client, real HTTP.

One process on the embedded default (in-memory channel layer); then two processes
sharing a Chroma server and Redis (127.0.0.1:6379), where a memory stored through one
reaches a standing query held open on the other.
"""

from __future__ import annotations

import json

import httpx
from websockets.sync.client import connect

from tests.helpers.embedded import REDIS_URL, manage_commands, migrate
from tests.servers import ChromaServer, DaphneServer


def _socket(server, key: str):
    socket = connect(server.url.replace("http", "ws") + "/ws/v1/live",
                     additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10)
    ready = json.loads(socket.recv(timeout=10))
    assert ready["type"] == "ready"
    return socket


def _next(socket, kind: str) -> dict:
    while True:
        message = json.loads(socket.recv(timeout=10))
        if message["type"] == kind:
            return message


def _setup(env) -> tuple[str, str]:
    migrate(env)
    _, watcher, writer = manage_commands(env, ["create_namespace", "demo"], *(
        ["create_api_key", "--namespace", "demo", "--role", "agent", "--agent-id", name]
        for name in ("watcher", "writer")))
    return watcher.splitlines()[-1], writer.splitlines()[-1]


def test_live_over_a_real_daphne(embedded_env, tmp_path):
    watcher, writer = _setup(embedded_env)
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        rest = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {writer}"},
                            timeout=60)
        for text in ("The release train leaves on Thursdays.", "Coffee beans are in the pantry."):
            assert rest.post("/api/v1/memories", json={"content": text}).status_code == 201
        with _socket(server, watcher) as socket:
            socket.send(json.dumps({"type": "recall", "id": "r1", "query": "when is the release",
                                    "k": 2}))
            streamed = _next(socket, "recall.results")
            expected = httpx.post(f"{server.url}/api/v1/recall", json={"query":
                                  "when is the release", "k": 2},
                                  headers={"Authorization": f"Bearer {watcher}"}).json()
            assert [r["id"] for r in streamed["results"]] == [r["id"] for r in expected["results"]]
            assert _next(socket, "done")["id"] == "r1"
            socket.send(json.dumps({"type": "subscribe", "id": "s1",
                                    "query": "the build server is down", "min_score": 0.5}))
            assert _next(socket, "subscribed")["id"] == "s1"
            rest.post("/api/v1/memories", json={"content": "Parking passes were renewed."})
            stored = rest.post("/api/v1/memories",
                               json={"content": "The build server is down again."}).json()
            match = _next(socket, "match")
            assert match["memory"]["id"] == stored["id"] and match["memory"]["agent_id"] == "writer"
            assert "Parking" not in json.dumps(match)


def test_two_daphne_processes_share_live_events_over_redis(embedded_env, tmp_path,
                                                           redis_prefix):
    with ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log") as chroma:
        env = {**embedded_env, "CHROMA_URL": chroma.url, "REDIS_URL": REDIS_URL,
               "MEMORYWEB_CHANNEL_PREFIX": redis_prefix}
        watcher, writer = _setup(env)
        with DaphneServer(tmp_path / "a.log", env) as first, \
                DaphneServer(tmp_path / "b.log", env) as second:
            with _socket(second, watcher) as socket:
                socket.send(json.dumps({"type": "subscribe", "id": "s1",
                                        "query": "payment gateway timeout", "min_score": 0.5}))
                _next(socket, "subscribed")
                socket.send(json.dumps({"type": "events", "id": "e1"}))
                _next(socket, "watching")
                stored = httpx.post(f"{first.url}/api/v1/memories",
                                    json={"content": "Payment gateway timeouts since 9am."},
                                    headers={"Authorization": f"Bearer {writer}"}).json()
                event = _next(socket, "event")
                assert event["event"] == "created" and event["memories"][0]["id"] == stored["id"]
                match = _next(socket, "match")
                assert match["memory"]["id"] == stored["id"]
