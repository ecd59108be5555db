"""Concurrent identical event batches store each event once (issue 20).

A hook client that times out retries, and a spool replay can race the live request it
replays: the same event ids reach the server at the same moment. As in
test_ingest_races.py, a real Daphne on its own embedded data directory serves many HTTP
clients released together by a barrier; rows, external ids and audit entries are read
from the database file afterwards, and the vector entries with ``manage.py stats`` once
the server has stopped. The unique constraint on (namespace, system, external id) picks
one writer per id; every other request answers with the winner's memories and writes
nothing (no row, audit entry or vector).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.helpers.embedded import manage, migrate
from tests.servers import DaphneServer

SETUP = """
from apps.core.roles import Role
from apps.tenancy.services import create_api_key, create_namespace
ns = create_namespace("races")
print(create_api_key(role=Role.AGENT, agent_id="hook", namespace=ns)[1])
"""


def _event(event_id: str, text: str) -> dict[str, Any]:
    return {"id": event_id, "event_type": "user_message", "session_id": "s1",
            "occurred_at": "2026-03-03T10:00:00Z", "text": text}


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Each call on a thread of its own, all released by one barrier; their answers in
    order (a client's own failure is raised here)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_identical_and_overlapping_batches_store_each_event_once(embedded_env,
                                                                           tmp_path):
    migrate(embedded_env)
    key = manage(embedded_env, "shell", "-c", SETUP).splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    same = [_event(f"same-{i}", f"The release train leaves at {i} o'clock.") for i in range(5)]
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        def post(events: list[dict]) -> Callable[[], httpx.Response]:
            return lambda: httpx.post(f"{server.url}/api/v1/events", json={"events": events},
                                      headers=headers, timeout=120)

        # 12 clients send the very same batch.
        identical = _at_once([post(same) for _ in range(12)])
        # 8 clients send batches that share one event and each hold one of their own.
        shared = _event("shared", "Everyone saw the pager go off at noon.")
        overlapping = _at_once([post([_event(f"own-{i}", f"Client {i} reporting."), shared])
                                for i in range(8)])

    assert Counter(r.status_code for r in identical) == {201: 1, 200: 11}, \
        [r.text for r in identical]
    answers = {tuple(row["memory_id"] for row in r.json()["results"]) for r in identical}
    assert len(answers) == 1  # every client was told the same memories
    assert sorted(r.json()["stored"] for r in identical) == [0] * 11 + [5]
    assert {r.status_code for r in overlapping} == {201}, [r.text for r in overlapping]
    assert len({r.json()["results"][1]["memory_id"] for r in overlapping}) == 1
    assert sum(r.json()["results"][1]["created"] for r in overlapping) == 1

    database = tmp_path / "data" / "memoryweb.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT count(*) FROM memories_memory").fetchone()[0]
        external = [value for (value,) in db.execute(
            "SELECT external_id FROM memories_externalid WHERE system = 'event'")]
        audited = [json.loads(ids) for (ids,) in db.execute(
            "SELECT record_ids FROM audit_auditentry WHERE operation = 'event.create'")]
    assert rows == 5 + 8 + 1
    assert sorted(external) == sorted([f"same-{i}" for i in range(5)] +
                                      [f"own-{i}" for i in range(8)] + ["shared"])
    assert sum(len(ids) for ids in audited) == rows  # each event audited once, by its writer
    stats = json.loads(manage(embedded_env, "stats", "--json"))
    (namespace,) = [row for row in stats["namespaces"] if row["slug"] == "races"]
    assert namespace["memories"] == namespace["vector_entries"] == rows
