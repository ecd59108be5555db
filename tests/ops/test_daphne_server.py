"""The embedded default end to end: a real Daphne process, its own data dir, real HTTP.

This is the README's walk-through as a test: create a namespace and a key with the
management commands, store over HTTP, recall over HTTP, then restart the server and
find the memory again (the write was durable).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.embedded import manage
from tests.servers import ROOT, DaphneServer


def test_store_and_recall_over_real_daphne(embedded_env, tmp_path):
    manage(embedded_env, "migrate", "-v0")  # the real command here; other tests: migrate(env)
    manage(embedded_env, "create_namespace", "demo")
    key = manage(embedded_env, "create_api_key", "--namespace", "demo", "--role", "agent",
                 "--agent-id", "bot-1")
    headers = {"Authorization": f"Bearer {key}"}
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        stored = httpx.post(f"{server.url}/api/v1/memories", headers=headers,
                            json={"content": "The API rate limit is 480 requests per minute"})
        assert stored.status_code == 201, stored.text
        memory_id = stored.json()["id"]
        recall = httpx.post(f"{server.url}/api/v1/recall", headers=headers,
                            json={"query": "how many requests per minute?", "k": 1})
        assert recall.status_code == 200
        assert recall.json()["results"][0]["id"] == memory_id
        # A second process never opens the embedded Chroma beside the server: one that
        # cannot reach the server's admin socket is refused with a clear message
        # (through the socket, commands work: tests/ops/test_commands_beside_server.py).
        busy = subprocess.run([sys.executable, "manage.py", "reindex"], cwd=ROOT,
                              env={**embedded_env, "MEMORYWEB_CONTROL_SOCKET": ""},
                              capture_output=True, text=True, timeout=120)
        assert busy.returncode != 0
        assert "in use by another process (the server, pid" in busy.stderr
        anonymous = httpx.post(f"{server.url}/api/v1/recall", json={"query": "x"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "not_authenticated"
        # A chunked body (no Content-Length) over the limit is refused too.
        def chunks():
            yield b'{"content": "'
            for _ in range(3 * 1024):
                yield b"x" * 1024
            yield b'"}'

        chunked = httpx.post(f"{server.url}/api/v1/memories", content=chunks(),
                             headers={**headers, "Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert chunked.json()["error"]["code"] == "payload_too_large"
    # A restart finds the acknowledged write.
    with DaphneServer(tmp_path / "daphne.log", embedded_env) as server:
        recall = httpx.post(f"{server.url}/api/v1/recall", headers=headers,
                            json={"query": "rate limit", "k": 1})
        assert recall.json()["results"][0]["id"] == memory_id
    # With the server stopped, the command may run.
    assert "demo: 1 memories indexed" in manage(embedded_env, "reindex")
    data_dir = Path(embedded_env["MEMORYWEB_DATA_DIR"])
    assert (data_dir / "memoryweb.sqlite3").exists() and (data_dir / "chroma").is_dir()
    with sqlite3.connect(data_dir / "memoryweb.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent per file
