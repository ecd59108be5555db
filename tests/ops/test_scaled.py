"""The scaled deployment for real: PostgreSQL, a Chroma server and Redis shared by two
Daphne processes and one job worker. Ingest through one server, recall through the
other, a live push across them, a job run by the worker; and /readiness answering 503
while the database or the Chroma server is down, 200 when it is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests.servers import ROOT, ChromaServer, DaphneServer, TcpProxy

#: Daphne servers, a huey worker, a Chroma server and manage.py on PostgreSQL.
pytestmark = pytest.mark.processes
POSTGRES = os.environ.get("MEMORYWEB_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MEMORYWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _manage(env, *args) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stderr[-3000:]}"
    return done.stdout.strip()


@pytest.fixture
def database(databases):
    return databases()


def _pg_env(tmp_path, name: str, database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({"MEMORYWEB_DATA_DIR": str(tmp_path / name), "MEMORYWEB_ENV": "local",
                "DEBUG": "false", "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
                "DATABASE_URL": f"{POSTGRES.rsplit('/', 1)[0]}/{database}"})
    return env


COUNT_AND_RECALL = """
from apps.memories import services
from apps.memories.models import Memory
from apps.tenancy.principal import Principal
from apps.core.roles import Role
root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
hits = services.recall(root, {"query": "where is the spare badge?", "k": 1, "mode": "vector"},
                       namespace="demo").hits
print(Memory.objects.count(), hits[0].memory.content)
"""

STORE = """
from apps.memories import services
from apps.tenancy.principal import Principal
from apps.core.roles import Role
root = Principal(label="system:test", agent_id="root", role=Role.SYSTEM)
services.ingest_many(root, [{"content": "The spare badge is in the blue drawer."},
                            {"content": "Lunch is at noon."}], namespace="demo")
"""


def test_postgresql_backup_and_restore(tmp_path, databases):
    """pg_dump while serving, pg_restore into an empty database; vectors re-embedded."""
    source = _pg_env(tmp_path, "source", databases())
    _manage(source, "migrate", "-v0")
    _manage(source, "create_namespace", "demo")
    _manage(source, "shell", "-c", STORE)
    _manage(source, "backup", "-o", str(tmp_path / "pg.tar.gz"))
    target = _pg_env(tmp_path, "target", databases())
    out = _manage(target, "restore", str(tmp_path / "pg.tar.gz"))
    assert "restored 1 namespaces, 2 memories (2 re-embedded); audit chain intact" in out, out
    assert _manage(target, "shell", "-c", COUNT_AND_RECALL).splitlines()[-1] == (
        "2 The spare badge is in the blue drawer.")
    again = subprocess.run([sys.executable, "manage.py", "restore", str(tmp_path / "pg.tar.gz")],
                           cwd=ROOT, env=target, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "empty database" in again.stderr


def _wait_for(check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _readiness(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readiness", timeout=30)
    return response.status_code, response.json()


def test_two_servers_and_a_worker_share_postgres_chroma_and_redis(tmp_path, database):
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.start()
    chroma = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log")
    chroma.start()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CHROMA_URL", "REDIS_URL"}}
    env.update({
        "MEMORYWEB_DATA_DIR": str(tmp_path / "data"), "MEMORYWEB_ENV": "local", "DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "memoryweb.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{database}",
        "CHROMA_URL": chroma.url, "REDIS_URL": REDIS_URL,
        "MEMORYWEB_CHANNEL_PREFIX": database,  # this test's keys on the shared Redis
    })
    worker = None
    try:
        _manage(env, "migrate", "-v0")
        _manage(env, "create_namespace", "demo")
        watcher, writer = (_manage(env, "create_api_key", "--namespace", "demo", "--role", "agent",
                                   "--agent-id", name).splitlines()[-1] for name in ("watcher", "writer"))
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen([sys.executable, "manage.py", "run_huey"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        with DaphneServer(tmp_path / "a.log", env) as first, DaphneServer(tmp_path / "b.log", env) as second:
            socket = connect(second.url.replace("http", "ws") + "/ws/v1/live", open_timeout=10,
                             additional_headers={"Authorization": f"Bearer {watcher}"})
            assert json.loads(socket.recv(timeout=10))["type"] == "ready"
            socket.send(json.dumps({"type": "subscribe", "id": "s1", "query": "kiln temperature",
                                    "min_score": 0.3}))
            assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"

            stored = httpx.post(f"{first.url}/api/v1/memories", timeout=60,
                                headers={"Authorization": f"Bearer {writer}"},
                                json={"content": "The kiln temperature peaks at 1260 degrees."})
            assert stored.status_code == 201
            memory_id = stored.json()["id"]
            pushed = json.loads(socket.recv(timeout=15))  # written on A, pushed from B
            assert pushed["type"] == "match" and pushed["memory"]["id"] == memory_id
            socket.close()
            recalled = httpx.post(f"{second.url}/api/v1/recall", timeout=60,
                                  headers={"Authorization": f"Bearer {watcher}"},
                                  json={"query": "how hot does the kiln get?", "k": 1}).json()
            assert recalled["results"][0]["id"] == memory_id

            # A job queued on Redis is run by the worker process (the daily job: its own
            # schedule cannot add a run while the test watches).
            _manage(env, "shell", "-c", "from apps.ops.tasks import audit_verify_full; "
                    "audit_verify_full()")

            def job_line() -> str | None:
                line = next(line for line in _manage(env, "jobs", "status").splitlines()
                            if line.startswith("audit_verify_full "))
                return line if " ok " in line else None

            line = _wait_for(job_line, what="the worker to run audit_verify_full")
            assert line.split()[-2] == "1", line  # one run, by the worker

            assert _readiness(first.url)[0] == 200
            proxy.stop()  # the database goes away
            code, body = _wait_for(lambda: (r := _readiness(first.url))[0] == 503 and r,
                                   what="readiness to see the database down")
            assert body["checks"]["database"].startswith("error") and body["checks"]["vector_store"] == "ok"
            proxy.start()
            _wait_for(lambda: _readiness(first.url)[0] == 200, what="readiness to recover")
            chroma.stop()  # the vector store goes away
            code, body = _readiness(second.url)
            assert code == 503 and body["checks"]["vector_store"].startswith("error")
            chroma.start()
            _wait_for(lambda: _readiness(second.url)[0] == 200, what="readiness after Chroma")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        chroma.stop()
        proxy.stop()
