"""Concurrent identical ingests store one memory; an Idempotency-Key holds under concurrency.

Issue 16 item 1: dedup and the Idempotency-Key were check-then-insert, so 16 concurrent
identical POSTs stored 8 rows and refused requests (409) committed their memories. Here
many clients race for real:

- **SQLite**: a real Daphne on its own embedded data directory, many HTTP clients (and
  WebSocket and MCP clients for the doors that share the service) released together by a
  barrier. Rows, audit entries and idempotency records are read from the database file
  afterwards; live events from a WebSocket watching the namespace, until a sentinel
  memory's event shows every earlier one has been delivered; vector entries with
  ``manage.py stats`` once the server has stopped.
- **PostgreSQL**: threads calling the service layer, each with its own connection, in a
  separate process (``race_driver.py``) on a fresh database on 127.0.0.1:5432, so every
  thread commits for real. It runs in the embedded suite and under tests/run_scaled.py.

Every race's losers must write nothing: one row, one ``memory.create`` audit entry, one
live event, one vector, and the winner's memory (or a 409) in every loser's answer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from tests.helpers.embedded import embedded_environment, migrate
from tests.servers import ROOT, DaphneServer

#: A Daphne per module (``race``), manage.py processes on PostgreSQL.
pytestmark = pytest.mark.processes
POSTGRES = os.environ.get("MEMORYWEB_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
SLUGS = ("same-content", "key-different-bodies", "key-same-body", "batch-key", "doors")
SETUP = """
import json
from apps.core.roles import Role
from apps.tenancy.services import create_api_key, create_namespace
keys = {}
for slug in %r:
    ns = create_namespace(slug)
    keys[slug] = create_api_key(role=Role.AGENT, agent_id=slug + "-bot", namespace=ns)[1]
print(json.dumps(keys))
"""


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stderr[-3000:]}"
    return done.stdout.strip()


class Race:
    """The embedded server under test, its keys (one agent per namespace) and its database."""

    def __init__(self, env: dict[str, str], server: DaphneServer, keys: dict[str, str]):
        self.env, self.server, self.keys = env, server, keys
        self.db_path = Path(env["MEMORYWEB_DATA_DIR"]) / "memoryweb.sqlite3"

    def headers(self, slug: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[slug]}", **extra}

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as db:
            return db.execute(sql, params).fetchall()

    def namespace_id(self, slug: str) -> int:
        return self.query("SELECT id FROM tenancy_namespace WHERE slug = ?", slug)[0][0]

    def rows(self, slug: str) -> dict[str, str]:
        """id -> content of the namespace's memories (the sentinel left out)."""
        return {str(uuid.UUID(pk)): content for pk, content in self.query(
            "SELECT id, content FROM memories_memory WHERE namespace_id = ? AND content != ?",
            self.namespace_id(slug), SENTINEL)}

    def created_audit(self, slug: str, sentinel_id: str) -> list[list[str]]:
        """The record ids of each ``memory.create`` entry (the sentinel's left out)."""
        entries = [json.loads(ids) for (ids,) in self.query(
            "SELECT record_ids FROM audit_auditentry WHERE namespace_id = ? AND operation = ?",
            self.namespace_id(slug), "memory.create")]
        return [ids for ids in entries if ids != [sentinel_id]]

    def idempotency_records(self, slug: str) -> int:
        return self.query("SELECT count(*) FROM memories_idempotencyrecord WHERE namespace_id = ?",
                          self.namespace_id(slug))[0][0]


SENTINEL = "sentinel: every earlier event has been delivered"


@pytest.fixture(scope="module")
def race(tmp_path_factory) -> Iterator[Race]:
    tmp = tmp_path_factory.mktemp("races")
    env = embedded_environment(tmp / "data")  # the embedded default
    migrate(env)
    keys = json.loads(_manage(env, "shell", "-c", SETUP % (SLUGS,)).splitlines()[-1])
    with DaphneServer(tmp / "daphne.log", env) as server:
        yield Race(env, server, keys)
    stats = json.loads(_manage(env, "stats", "--json"))
    vectors = {row["slug"]: (row["memories"], row["vector_entries"]) for row in stats["namespaces"]}
    # Every namespace's vector index holds exactly its SQL rows: no loser indexed a
    # memory it did not keep (checked once the server has let go of the embedded store).
    assert all(memories == entries for memories, entries in vectors.values()), vectors


def _together(count: int, call: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``call(i)`` on ``count`` threads, released at once by a barrier; a client's own
    failure is raised here, in the test's thread."""
    barrier = threading.Barrier(count)
    responses: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            responses[i] = call(i)
        except BaseException as exc:  # re-raised below, in the test's thread
            responses[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    return responses


class Watcher:
    """A WebSocket on the namespace's event feed: the ids of every ``created`` event."""

    def __init__(self, race: Race, slug: str):
        self.race, self.slug = race, slug
        self.socket = connect(race.server.url.replace("http", "ws") + "/ws/v1/live",
                              additional_headers=race.headers(slug), open_timeout=30)
        assert json.loads(self.socket.recv(timeout=30))["type"] == "ready"
        self.socket.send(json.dumps({"type": "events", "id": "e"}))
        while json.loads(self.socket.recv(timeout=30))["type"] != "watching":
            pass

    def created(self) -> tuple[list[str], str]:
        """Store a sentinel, then read events until its own arrives: the ids of every
        earlier ``created`` event, and the sentinel's id."""
        sentinel = httpx.post(f"{self.race.server.url}/api/v1/memories", timeout=120,
                              headers=self.race.headers(self.slug), json={"content": SENTINEL})
        assert sentinel.status_code == 201, sentinel.text
        sentinel_id = sentinel.json()["id"]
        ids: list[str] = []
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message["type"] != "event" or message["event"] != "created":
                continue
            for memory in message["memories"]:
                if memory["id"] == sentinel_id:
                    self.socket.close()
                    return ids, sentinel_id
                ids.append(memory["id"])


def _post(race: Race, slug: str, path: str, body: Any, **headers: str) -> Callable[[int], Any]:
    def call(i: int) -> httpx.Response:
        payload = body(i) if callable(body) else body
        return httpx.post(f"{race.server.url}{path}", json=payload, timeout=120,
                          headers=race.headers(slug, **headers))
    return call


def _one_winner(race: Race, slug: str, watcher: Watcher) -> str:
    """The namespace holds one memory, created by one audit entry and one live event."""
    events, sentinel_id = watcher.created()
    rows = race.rows(slug)
    assert len(rows) == 1, f"{slug}: {len(rows)} rows stored: {sorted(rows.values())}"
    (winner,) = rows
    assert race.created_audit(slug, sentinel_id) == [[winner]], slug
    assert events == [winner], f"{slug}: live events for {events}"
    return winner


def test_identical_content_from_16_clients_is_stored_once(race):
    watcher = Watcher(race, "same-content")
    responses = _together(16, _post(race, "same-content", "/api/v1/memories",
                                    {"content": "The boiler is serviced every October."}))
    winner = _one_winner(race, "same-content", watcher)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 15}, \
        [r.text for r in responses]
    assert {r.json()["id"] for r in responses} == {winner}
    assert [r.json()["duplicate"] for r in responses if r.status_code == 200] == [True] * 15


def test_one_idempotency_key_with_8_bodies_commits_only_the_winner(race):
    watcher = Watcher(race, "key-different-bodies")
    responses = _together(8, _post(race, "key-different-bodies", "/api/v1/memories",
                                   lambda i: {"content": f"draft number {i}"},
                                   **{"Idempotency-Key": "order-17"}))
    winner = _one_winner(race, "key-different-bodies", watcher)
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 7}, \
        [r.text for r in responses]
    (created,) = [r for r in responses if r.status_code == 201]
    assert created.json()["id"] == winner
    assert race.rows("key-different-bodies")[winner] == created.json()["content"]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["field"] == "Idempotency-Key"
    assert race.idempotency_records("key-different-bodies") == 1


def test_one_idempotency_key_with_one_body_16_times_stores_one_row(race):
    watcher = Watcher(race, "key-same-body")
    responses = _together(16, _post(race, "key-same-body", "/api/v1/memories",
                                    {"content": "Invoice 4411 was paid."},
                                    **{"Idempotency-Key": "pay-4411"}))
    winner = _one_winner(race, "key-same-body", watcher)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 15}, \
        [r.text for r in responses]
    assert {r.json()["id"] for r in responses} == {winner}
    assert race.idempotency_records("key-same-body") == 1


def test_a_batch_retried_by_8_clients_with_one_key_is_stored_once(race):
    watcher = Watcher(race, "batch-key")
    batch = {"memories": [{"content": f"batch line {i}"} for i in range(5)]}
    responses = _together(8, _post(race, "batch-key", "/api/v1/memories/batch", batch,
                                   **{"Idempotency-Key": "import-9"}))
    events, sentinel_id = watcher.created()
    rows = race.rows("batch-key")
    assert sorted(rows.values()) == [f"batch line {i}" for i in range(5)]
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    ids = {tuple(row["id"] for row in r.json()["results"]) for r in responses}
    assert len(ids) == 1 and set(next(iter(ids))) == set(rows)
    assert [sorted(entry) for entry in race.created_audit("batch-key", sentinel_id)] == \
        [sorted(rows)]
    assert sorted(events) == sorted(rows)
    assert race.idempotency_records("batch-key") == 1


def _ws_ingest(race: Race, slug: str, text: str) -> Callable[[int], str]:
    def call(i: int) -> str:
        with connect(race.server.url.replace("http", "ws") + "/ws/v1/live",
                     additional_headers=race.headers(slug), open_timeout=30) as socket:
            assert json.loads(socket.recv(timeout=30))["type"] == "ready"
            socket.send(json.dumps({"type": "ingest", "id": "i", "content": text}))
            while True:
                message = json.loads(socket.recv(timeout=120))
                if message["type"] in ("ingested", "error"):
                    assert message["type"] == "ingested", message
                    return message["results"][0]["id"]
    return call


def _mcp_store(race: Race, slug: str, text: str) -> Callable[[int], str]:
    def call(i: int) -> str:
        response = httpx.post(f"{race.server.url}/mcp", timeout=120, headers=race.headers(
            slug, Accept="application/json, text/event-stream"), json={
            "jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "store", "arguments": {"content": text}}})
        assert response.status_code == 200, response.text
        body = response.text
        if body.startswith("event:") or body.startswith("data:"):  # one SSE message
            body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
        result = json.loads(body)["result"]
        assert not result.get("isError"), result
        return json.loads(result["content"][0]["text"])["id"]
    return call


def test_every_door_racing_with_the_same_content_stores_it_once(race):
    """REST, both drop-in stores, the drop-in batch, the WebSocket and MCP at once."""
    slug, text = "doors", "The fire exit on floor 3 is behind the kitchen."
    doors: list[tuple[str, Callable[[int], Any], Callable[[Any], str]]] = [
        ("rest", _post(race, slug, "/api/v1/memories", {"content": text}),
         lambda r: r.json()["id"]),
        ("cmm", _post(race, slug, "/cmm/ingest", {"gist": text}),
         lambda r: r.json()["memory"]["memoryweb_id"]),
        ("v1", _post(race, slug, "/v1/store", {"content": text}), lambda r: r.json()["id"]),
        ("v1-batch", _post(race, slug, "/v1/store/batch", {"memories": [{"content": text}]}),
         lambda r: r.json()["stored"][0]["id"]),
        ("ws", _ws_ingest(race, slug, text), lambda memory_id: memory_id),
        ("mcp", _mcp_store(race, slug, text), lambda memory_id: memory_id),
    ]
    watcher = Watcher(race, slug)
    calls = [door for door in doors for _ in range(2)]  # two clients per door
    results = _together(len(calls), lambda i: calls[i][1](i))
    winner = _one_winner(race, slug, watcher)
    answered = {}
    for (name, _, read_id), result in zip(calls, results, strict=True):
        if isinstance(result, httpx.Response):
            assert result.status_code in (200, 201), f"{name}: {result.text}"
        answered.setdefault(name, set()).add(read_id(result))
    assert answered == {name: {winner} for name, _, _ in doors}


def _postgres_database() -> Iterator[str]:
    name = f"mw_races_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is needed for the concurrency test: {exc}")
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


def test_concurrent_service_calls_on_postgresql_store_one_row(postgres_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(tmp_path / "data"), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                "DATABASE_URL": postgres_url})
    _manage(env, "migrate", "-v0")
    done = subprocess.run([sys.executable, "-m", "tests.memories.race_driver"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    problems = []
    for slug, seen in report.items():
        crashes = [o for o in seen["outcomes"] if "crash" in o]
        if crashes:
            problems.append(f"{slug}: {crashes[:2]}")
        expected_rows = 5 if slug.startswith("batch") else 1
        if len(seen["rows"]) != expected_rows:
            problems.append(f"{slug}: {len(seen['rows'])} rows {seen['contents']}")
        if sorted(i for ids in seen["audit"] for i in ids) != seen["rows"]:
            problems.append(f"{slug}: audit entries {seen['audit']} for rows {seen['rows']}")
        if sorted(seen["events"]) != seen["rows"]:
            problems.append(f"{slug}: live events {seen['events']} for rows {seen['rows']}")
        if (seen["vectors"], seen["outbox"]) != (expected_rows, 0):
            problems.append(f"{slug}: vectors {seen['vectors']}, outbox {seen['outbox']}")
        answered = [o for o in seen["outcomes"] if "ids" in o]
        if any(sorted(set(o["ids"])) != seen["rows"] for o in answered):
            problems.append(f"{slug}: answers name other ids than the rows: {answered[:3]}")
        fresh = [o for o in answered if not all(o["duplicate"])]
        if slug != "batch-overlap" and len(fresh) != 1:
            problems.append(f"{slug}: {len(fresh)} answers claim to have stored it")
    refused = [o for o in report["key-different-bodies"]["outcomes"] if "error" in o]
    if refused != [{"error": "conflict", "field": "Idempotency-Key"}] * 7:
        problems.append(f"key-different-bodies: refusals {refused}")
    for slug in ("key-same-body", "batch-key", "key-different-bodies"):
        if report[slug]["idempotency_records"] != 1:
            problems.append(f"{slug}: {report[slug]['idempotency_records']} idempotency records")
    assert not problems, "\n".join(problems)
