"""Management commands beside a running embedded server (issue 16, item 16).

The embedded Chroma is one process's: the server's. A command started while a real Daphne
serves (on its own data directory, in-process jobs and outbox drain on, as in production)
must do its vector-store work through the server's admin socket, and never take the store
from it: ``stats``, ``verify_certificate``, ``reindex``, ``drain_outbox``, ``export``,
``import_memories``, ``backup`` and the embedded ``mcp`` all succeed while recall and
``/readiness`` keep answering 200. A command that held the store before the server
started hands it over as soon as the server is up, and keeps working through it.

These tests always run embedded (``embedded_env`` drops DATABASE_URL, CHROMA_URL and
REDIS_URL), so the scaled pass leaves them out (tests/plugins/passes.py): the
single-owner lock exists only for the embedded Chroma, and that is what is tested here;
the scaled mode (a Chroma server every process talks to) has no owner to share.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import sys
import threading
from pathlib import Path

import httpx
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from websockets.sync.client import connect

from tests.helpers.commands import FACTS, run_command, set_up_keys
from tests.helpers.embedded import manage
from tests.servers import ROOT, DaphneServer


class Poller:
    """Recall and /readiness, one after the other, from a thread until stopped: every
    answer is kept, so the test can say that each one was 200."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.answers: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                for name, send in (
                        ("recall", lambda: client.post("/api/v1/recall", headers=headers, json={
                            "query": "when do backups run?", "k": 3})),
                        ("readiness", lambda: client.get("/readiness"))):
                    try:
                        response = send()
                        self.answers.append((name, response.status_code, response.text[:300]))
                    except httpx.HTTPError as exc:
                        self.answers.append((name, 0, repr(exc)))
                self._stop.wait(0.05)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def assert_all_ok(self) -> None:
        bad = [answer for answer in self.answers if answer[1] != 200]
        assert self.answers and not bad, f"{len(bad)} of {len(self.answers)} answers not 200: {bad[:5]}"


def _tool(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def _mcp(env: dict[str, str], key: str, steps):
    """An MCP client of the official SDK driving the embedded ``manage.py mcp`` over stdio."""
    parameters = StdioServerParameters(command=sys.executable, args=["manage.py", "mcp"],
                                       env={**env, "MEMORYWEB_API_KEY": key}, cwd=str(ROOT))
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await steps(session)


REVOKE = ("from django.utils import timezone; from apps.tenancy.models import ApiKey; "
          "ApiKey.objects.filter(agent_id='agent-bot').update(revoked_at=timezone.now())")


def test_commands_work_through_a_running_server(embedded_env, tmp_path):
    env = {**embedded_env, "MEMORYWEB_ERASURE_FOUR_EYES": "false"}
    keys = set_up_keys(env)
    # REVOKE below is a shell's data fix in another process: seen at the next call only when
    # the server looks keys up on every call (else within MEMORYWEB_KEY_CACHE_SECONDS).
    env["MEMORYWEB_KEY_CACHE_SECONDS"] = "0"
    with DaphneServer(tmp_path / "daphne.log", env) as server:
        agent = {"Authorization": f"Bearer {keys['agent']}"}
        for fact in FACTS:
            assert httpx.post(f"{server.url}/api/v1/memories", headers=agent,
                              json={"content": fact}).status_code == 201
        dana = httpx.post(f"{server.url}/api/v1/memories", headers=agent, json={
            "content": "Dana is allergic to nuts.", "metadata": {"subject_id": "dana"}})
        assert dana.status_code == 201, dana.text
        erased = httpx.request("DELETE", f"{server.url}/api/v1/forget/certified", json={
            "namespace": "demo", "subject_id": "dana"},
            headers={"Authorization": f"Bearer {keys['system']}"})
        assert erased.status_code == 200, erased.text
        certificate = tmp_path / "certificate.json"
        certificate.write_text(erased.text)

        with Poller(server.url, keys["reader"]) as poller:
            stats = json.loads(run_command(env, "stats", "--json").stdout)
            demo = next(row for row in stats["namespaces"] if row["slug"] == "demo")
            assert demo["memories"] == demo["vector_entries"] == len(FACTS), demo
            assert demo["health"] == "ok"

            verified = run_command(env, "verify_certificate", str(certificate))
            assert "certificate verified: 1 memories erased" in verified.stdout

            assert f"demo: {len(FACTS)} memories indexed" in run_command(env, "reindex").stdout
            assert "failed=0" in run_command(env, "drain_outbox").stdout

            export = tmp_path / "demo.jsonl"
            run_command(env, "export", "--namespace", "demo", "--output", str(export))
            with connect(server.url.replace("http", "ws") + "/ws/v1/live", open_timeout=60,
                         additional_headers={"Authorization": f"Bearer {keys['copy']}"}) as feed:
                assert json.loads(feed.recv(timeout=60))["type"] == "ready"
                feed.send(json.dumps({"type": "events", "id": "e1"}))
                assert json.loads(feed.recv(timeout=60))["type"] == "watching"
                imported = run_command(env, "import_memories", "--namespace", "copy", "--format",
                                       "jsonl", str(export))
                # The command's events reach the server's WebSocket feeds too.
                event = json.loads(feed.recv(timeout=60))
            assert f"copy: {len(FACTS)} imported" in imported.stdout
            assert f"{len(FACTS)}/{len(FACTS)}" in imported.stderr  # tqdm's progress bar
            assert (event["type"], event["event"], event["namespace"]) == ("event", "created", "copy")
            assert len(event["memories"]) == len(FACTS)
            # The imported vectors went into the server's index: vector-only recall finds them.
            recalled = httpx.post(f"{server.url}/api/v1/recall", json={
                "query": "when do backups run?", "k": 1, "mode": "vector"},
                headers={"Authorization": f"Bearer {keys['copy']}"})
            assert recalled.status_code == 200, recalled.text
            assert recalled.json()["results"][0]["content"] == FACTS[1]

            run_command(env, "backup", "--output", str(tmp_path / "backup.tar.gz"))

            async def agent_steps(session):
                stored = _tool(await session.call_tool("store", {
                    "content": "The release train leaves on Thursdays."}))
                found = _tool(await session.call_tool("recall", {
                    "query": "when does the release train leave?", "k": 1, "mode": "vector"}))
                assert found["results"][0]["id"] == stored["id"]
                # The server checks the key at every call: revoked meanwhile, refused at once.
                manage(env, "shell", "-c", REVOKE)
                after = await session.call_tool("list_recent", {"limit": 1})
                assert after.is_error and "authentication_failed" in after.content[0].text, \
                    after.content
                return stored["id"]

            stored_id = asyncio.run(_mcp(env, keys["agent"], agent_steps))
            # The embedded mcp stored through the server: its write is found over HTTP.
            listed = httpx.get(f"{server.url}/api/v1/memories/{stored_id}",
                               headers={"Authorization": f"Bearer {keys['admin']}"})
            assert listed.status_code == 200, listed.text
        poller.assert_all_ok()
        final = json.loads(run_command(env, "stats", "--json").stdout)
        assert all(row["health"] == "ok" for row in final["namespaces"]), final["namespaces"]


def test_a_command_started_first_hands_the_store_to_the_server(embedded_env, tmp_path):
    keys = set_up_keys(embedded_env)
    log = tmp_path / "daphne.log"
    server = DaphneServer(log, embedded_env)

    async def steps(session):
        # No server yet: the command opens the embedded store itself.
        first = _tool(await session.call_tool("store", {"content": FACTS[1]}))
        assert _tool(await session.call_tool("recall", {
            "query": "when do backups run?", "k": 1, "mode": "vector"}))["results"][0]["id"] \
            == first["id"]
        # The server starts while the command still runs and holds the store: it must
        # become ready (DaphneServer.start waits for /readiness 200), not stay 503.
        await asyncio.to_thread(server.start, 90)
        with Poller(server.url, keys["reader"]) as poller:
            # The command keeps working, now through the server.
            second = _tool(await session.call_tool("store", {"content": FACTS[0]}))
            found = _tool(await session.call_tool("recall", {
                "query": "what does the staging deploy need?", "k": 1, "mode": "vector"}))
            assert found["results"][0]["id"] == second["id"]
        poller.assert_all_ok()
        return first["id"]

    try:
        first_id = asyncio.run(_mcp(embedded_env, keys["agent"], steps))
        # The command has exited: the server still answers, and finds what it stored.
        headers = {"Authorization": f"Bearer {keys['agent']}"}
        assert httpx.get(f"{server.url}/readiness").status_code == 200
        recalled = httpx.post(f"{server.url}/api/v1/recall", headers=headers, json={
            "query": "when do backups run?", "k": 1, "mode": "vector"})
        assert recalled.status_code == 200 and recalled.json()["results"][0]["id"] == first_id
        assert "demo: 2 memories indexed" in run_command(embedded_env, "reindex").stdout
    finally:
        server.stop()


def _ask(path: Path, line: bytes) -> dict:
    """One raw request on the admin socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        with sock.makefile("rb") as reader:
            return json.loads(reader.readline())


#: Every vector-store operation from a command's process while the server holds the store.
VECTOR_OPS = """
import json
import numpy as np
from apps.memories.vectorstore import get_vector_store
from apps.tenancy.models import Namespace

store, ns = get_vector_store(), Namespace.objects.get(slug="demo")
vectors = np.eye(3, 384, dtype=np.float32)
store.upsert(ns, ["a", "b", "c"], vectors, [{"agent_id": "x", "t:red": True},
                                            {"agent_id": "y"}, {"agent_id": "z"}])
out = {"store": type(store).__name__, "count": store.count(ns),
       "query": [h.id for h in store.query(ns, vectors[1], 2, {"agent_id": "y"})],
       "nearest": [h.id for h in store.nearest(ns, vectors[2:3])],
       # at least 0.95 similar (the near-duplicate probe): c itself, nothing near (0.6, 0.8)
       "within": [h and h.id for h in store.nearest(
           ns, np.stack([vectors[2], 0.6 * vectors[0] + 0.8 * vectors[1]]), 0.95)],
       "embeddings": {i: v.tolist()[:3] for i, v in store.embeddings(ns, ["a", "zz"]).items()}}
store.upsert(ns, ["a"], vectors[:1], [{"agent_id": "x"}])  # the tag removed
out["tagged"] = [h.id for h in store.query(ns, vectors[0], 3, {"t:red": True})]
# Filter fields only (a tags-only edit): the stored vector is kept and returned, an id
# the collection lacks is left out, a key the new metadata lacks is removed.
kept = store.update_metadata(ns, ["c", "zz"], [{"agent_id": "w", "t:blue": True}, {"agent_id": "q"}])
out["kept"] = {i: v.tolist()[:3] for i, v in kept.items()}
out["blue"] = [h.id for h in store.query(ns, vectors[2], 3, {"t:blue": True})]
store.update_metadata(ns, ["c"], [{"agent_id": "w"}])
out["blue_after"] = [h.id for h in store.query(ns, vectors[2], 3, {"t:blue": True})]
store.delete(ns, ["b"])
out["left"] = sorted(store.all_ids(ns, page=1))
store.heartbeat()
print(json.dumps(out))
"""


def test_the_admin_socket_runs_named_operations_only(embedded_env, tmp_path):
    keys = set_up_keys(embedded_env)
    path = Path(embedded_env["MEMORYWEB_DATA_DIR"], "control.sock")
    with DaphneServer(tmp_path / "daphne.log", embedded_env):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # only this user may connect
        done = json.loads(run_command(embedded_env, "shell", "-c", VECTOR_OPS).stdout.splitlines()[-1])
        assert done == {"store": "GuestVectorStore", "count": 3, "query": ["b"], "nearest": ["c"],
                        "within": ["c", None], "embeddings": {"a": [1.0, 0.0, 0.0]}, "tagged": [],
                        "left": ["a", "c"],
                        "kept": {"c": [0.0, 0.0, 1.0]}, "blue": ["c"], "blue_after": []}
        hello = _ask(path, b'{"op": "hello"}')
        assert hello["ok"] and hello["result"]["protocol"] == 1
        assert "mcp.call" in hello["result"]["operations"]
        for line, code in ((b"not json", "bad_request"), (b'["hello"]', "bad_request"),
                           (b'{"op": "shell", "args": {"command": "id"}}', "unknown_operation"),
                           (b'{"op": "vector.drop_collection", "args": {"name": "other"}}',
                            "bad_request"),
                           (b'{"op": "vector.upsert", "args": {"namespace": {"id": 1}}}',
                            "bad_request"),
                           (b'{"op": "vector.update_metadata", "args": {"namespace": {"id": 1}, '
                            b'"ids": ["a"], "metadatas": []}}', "bad_request")):
            answer = _ask(path, line)
            assert not answer["ok"] and answer["error"]["code"] == code, (line, answer)
        for bad in (b"NaN", b"Infinity", b'"0.9"', b"true"):  # the probe's similarity bound
            answer = _ask(path, b'{"op": "vector.nearest", "args": {"namespace": {"id": 1, "slug": '
                          b'"demo", "collection": "demo"}, "embeddings": {"shape": [1, 3], '
                          b'"f32": "AAAAAAAAAAAAAAAA"}, "within": ' + bad + b"}}")
            assert answer["error"] == {"code": "bad_request", "message":
                                       "vector.nearest: within is a finite number"}, (bad, answer)
        # The key travels with every MCP call and is checked there.
        for key in ("", "mw_live_not_a_key", keys["agent"] + "x"):
            refused = _ask(path, json.dumps({"op": "mcp.call", "args": {
                "key": key, "tool": "list_recent", "args": [5]}}).encode())
            assert refused["error"] == {"code": "tool_error", "message": "authentication_failed: "
                                        "Invalid, expired or revoked API key."}
        listed = _ask(path, json.dumps({"op": "mcp.call", "args": {
            "key": keys["agent"], "tool": "list_recent", "args": [5]}}).encode())
        assert listed == {"ok": True, "result": []}
    assert not path.exists()  # removed when the server stops
