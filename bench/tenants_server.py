"""bench/tenants.py's server side: one Daphne on one data directory, as deployed
(restartable, namespaces and keys through the system-admin REST routes, memories and
recall with each namespace's key), and what its process holds: RSS, threads, open files
by kind, disk, the SQL schema and what it costs a new connection.

A module of its own so the command (bench/tenants.py) stays its options, the phases and
the run; the report is bench/tenants_report.py's.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

try:
    from bench.recall_latency import free_port, manage
except ImportError:  # run as a script, bench/ is sys.path[0]
    from recall_latency import free_port, manage

REPO = Path(__file__).resolve().parent.parent
AGENT = "bench-agent"


# --- processes ---------------------------------------------------------------------------

class Server:
    """One Daphne on one data directory, as deployed; restartable, with its own client."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], timeout: float,
                 nofile: int | None = None):
        self.name, self.data_dir, self.timeout, self.nofile = name, data_dir, timeout, nofile
        self.env = {**env, "MEMORYWEB_DATA_DIR": str(data_dir)}
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self.admin = ""  # a system-admin key, made before the first start

    def setup(self) -> None:
        manage(self.env, "migrate", "-v0")
        self.admin = manage(self.env, "create_api_key", "--system-admin").splitlines()[-1].strip()

    def start(self) -> float:
        """Start and wait for /readiness 200; the seconds that took."""
        port, log_path = free_port(), self.data_dir / "daphne.log"
        started = time.perf_counter()
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                 "memoryweb.asgi:application"], cwd=REPO, env=self.env, stdout=log, stderr=log,
                preexec_fn=self._limit_files if self.nofile else None)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: daphne exited with {self.proc.returncode}:\n"
                                   f"{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readiness", timeout=5,
                             trust_env=False).status_code == 200:
                    elapsed = time.perf_counter() - started
                    self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                                               trust_env=False)
                    return elapsed
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name}: not ready after {self.timeout:.0f} s")

    def _limit_files(self) -> None:
        """In the child: the soft RLIMIT_NOFILE asked for (Chroma sizes its cache of open
        HNSW indexes from it: a fifth of the limit, four files each)."""
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def call(self, method: str, path: str, key: str, expect: int, body: Any = None) -> httpx.Response:
        assert self.client is not None, "server not started"
        response = self.client.request(method, path, json=body,
                                       headers={"Authorization": f"Bearer {key}"})
        if response.status_code != expect:
            raise RuntimeError(f"{self.name}: {method} {path}: {response.status_code} "
                               f"{response.text[:500]}")
        return response

    def create_namespace(self, slug: str) -> str:
        """A namespace and an agent key of it, through the system-admin REST routes."""
        self.call("POST", "/api/v1/namespaces", self.admin, 201, {"slug": slug})
        return self.call("POST", f"/api/v1/namespaces/{slug}/keys", self.admin, 201,
                         {"role": "agent", "agent_id": AGENT}).json()["key"]

    def store(self, key: str, memories: list[dict[str, Any]], batch: int) -> None:
        for i in range(0, len(memories), batch):
            chunk = memories[i:i + batch]
            body = self.call("POST", "/api/v1/memories/batch", key, 201, {"memories": chunk}).json()
            if body["count"] != len(chunk):
                raise RuntimeError(f"{self.name}: batch stored {body['count']} of {len(chunk)}")

    def delete_namespace(self, slug: str) -> None:
        self.call("DELETE", f"/api/v1/namespaces/{slug}", self.admin, 204)

    def recall(self, key: str, query: str) -> httpx.Response:
        response = self.call("POST", "/api/v1/recall", key, 200, {"query": query, "k": 10})
        if not response.json()["results"]:
            raise RuntimeError(f"{self.name}: no results for {query!r}")
        return response


# --- what the process holds ----------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    """Memory and threads (/proc status) and the soft open-files limit: Chroma keeps up
    to a fifth of that limit of HNSW indexes open, four files each."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
            fields[name] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            fields["nofile"] = int(line.split()[3])
    return fields


def _fd_kinds(pid: int, data_dir: Path) -> dict[str, int]:
    """Open descriptors by what they point at: Chroma's files, SQLite's, sockets, other."""
    kinds: dict[str, int] = {}
    chroma, sqlite_files = str(data_dir / "chroma"), ("sqlite3", "sqlite3-wal", "sqlite3-shm")
    for fd in os.scandir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(fd.path)
        except OSError:
            continue  # closed meanwhile
        kind = "socket" if target.startswith("socket:") else "other"
        if target.endswith(sqlite_files):
            kind = "chroma_sqlite" if target.startswith(chroma) else "sqlite"
        elif target.startswith(chroma):
            kind = "chroma_segment"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _disk(path: Path) -> int:
    """Bytes allocated under ``path`` (st_blocks, as du counts them)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _schema(data_dir: Path) -> dict[str, Any]:
    """The SQL schema's size and what it costs a new connection: SQLite parses the whole
    schema on a connection's first statement (and again after any DDL elsewhere)."""
    uri, first = f"file:{data_dir / 'memoryweb.sqlite3'}?mode=ro", []
    for _ in range(3):  # the median of three
        started = time.perf_counter()
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            conn.execute("SELECT 1 FROM tenancy_namespace LIMIT 1").fetchall()
            first.append((time.perf_counter() - started) * 1000)
    first_ms = sorted(first)[1]
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        fts = conn.execute("SELECT count(*) FROM sqlite_master WHERE sql LIKE '%USING fts5(%'").fetchone()[0]
    with closing(sqlite3.connect(f"file:{data_dir / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)) as conn:
        collections = conn.execute("SELECT count(*) FROM collections").fetchone()[0]
    small, small_file = 0, data_dir / "chroma" / "small_index.sqlite3"  # apps/memories/small_index.py
    if small_file.exists():
        with closing(sqlite3.connect(f"file:{small_file}?mode=ro", uri=True)) as conn:
            small = conn.execute("SELECT count(*) FROM collections").fetchone()[0]
    return {"sqlite_master_rows": rows, "fts_tables": fts, "new_connection_first_query_ms": first_ms,
            "chroma_collections": collections, "small_index_collections": small}


def sample(server: Server, **extra: Any) -> dict[str, Any]:
    """RSS, threads and open files of the server process, disk and schema of its data dir."""
    assert server.proc is not None
    pid = server.proc.pid
    status, kinds = _status(pid), _fd_kinds(pid, server.data_dir)
    chroma = server.data_dir / "chroma"
    dirs = sum(1 for entry in os.scandir(chroma) if entry.is_dir()) if chroma.exists() else 0
    return {**extra, "rss_mb": status["VmRSS"] / 1024, "hwm_mb": status["VmHWM"] / 1024,
            "rss_anon_mb": status.get("RssAnon", 0) / 1024, "rss_file_mb": status.get("RssFile", 0) / 1024,
            "threads": status["Threads"], "nofile": status.get("nofile"),
            "open_files": sum(kinds.values()), "fd_kinds": kinds, "chroma_segment_dirs": dirs,
            "disk_mb": {"total": _disk(server.data_dir) / 2**20,
                        "chroma": _disk(server.data_dir / "chroma") / 2**20},
            **_schema(server.data_dir)}
